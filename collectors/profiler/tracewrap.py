"""Run a Python program under tracemalloc and write its top allocation sites when it ends.

Usage (standard library only, so any Python runs it by path; ``python -m collectors.profiler.tracewrap``
works too)::

    python tracewrap.py --out FILE [--top N] [--frames N] -- SCRIPT ARGS...
    python tracewrap.py --out FILE -- -m MODULE ARGS...
    python tracewrap.py --out FILE -- -c CODE ARGS...

The program runs as ``__main__`` with ``sys.argv`` and ``sys.path[0]`` as ``python SCRIPT`` would set them.
When the program's main code ends (normal end, ``sys.exit``, an uncaught exception; at exit as a fallback)
or on SIGTERM (novatune ends a launched command with it) the snapshot is written once, atomically, as JSON::

    {"top": [{"file": ..., "line": N, "size_bytes": N, "count": N}, ...],
     "traced_current_bytes": N, "traced_peak_bytes": N}

the sites ordered by size, the wrapper's own and the import machinery's frames left out.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
import threading
import tracemalloc
from typing import Any

_done = threading.Lock()
_state = {"written": False}


def _usage(msg: str) -> SystemExit:
    sys.stderr.write(f"tracewrap: {msg}\nusage: tracewrap.py --out FILE [--top N] [--frames N] -- "
                     "(SCRIPT | -m MODULE | -c CODE) [ARGS...]\n")
    return SystemExit(2)


def _parse(argv: list[str]) -> tuple[str, int, int, list[str]]:
    out, top, frames = "", 25, 1
    i = 0
    while i < len(argv) and argv[i] != "--":
        if argv[i] in ("--out", "--top", "--frames") and i + 1 < len(argv):
            value = argv[i + 1]
            if argv[i] == "--out":
                out = value
            elif not value.isdigit() or int(value) < 1:
                raise _usage(f"{argv[i]} needs a positive integer")
            elif argv[i] == "--top":
                top = int(value)
            else:
                frames = int(value)
            i += 2
        else:
            raise _usage(f"unknown option {argv[i]!r}")
    rest = argv[i + 1:]
    if not out or not rest:
        raise _usage("--out FILE and a program after -- are needed")
    return out, top, frames, rest


def _dump(out: str, top: int, skip: tuple[str, ...]) -> None:
    with _done:
        if _state["written"] or not tracemalloc.is_tracing():
            return
        _state["written"] = True
        snap = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, f) for f in skip])
        rows: list[dict[str, Any]] = []
        for stat in snap.statistics("lineno")[:top]:
            frame = stat.traceback[0]
            rows.append({"file": frame.filename, "line": frame.lineno, "size_bytes": stat.size, "count": stat.count})
        current, peak = tracemalloc.get_traced_memory()
        doc = {"top": rows, "traced_current_bytes": current, "traced_peak_bytes": peak}
        tmp = f"{out}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(doc, fh)
        os.replace(tmp, out)


def main(argv: list[str] | None = None) -> None:
    """Run the program (see the module docstring). Raises: SystemExit: 2 on a usage error, else the program's."""
    out, top, frames, rest = _parse(list(sys.argv[1:] if argv is None else argv))
    # (names taken now: running the program as __main__ replaces this module's globals)
    skip = (tracemalloc.__file__, os.path.abspath(__file__), runpy.__file__, "<frozen runpy>",
            "<frozen importlib._bootstrap>",
            "<frozen importlib._bootstrap_external>")
    atexit.register(_dump, out, top, skip)

    def on_term(signum: int, _frame: object) -> None:
        _dump(out, top, skip)  # here, not only at exit: non-daemon threads would delay atexit past the SIGKILL
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    tracemalloc.start(frames)
    try:
        _run(rest)
    finally:  # while the program's globals are still alive (an exit would free them before atexit runs)
        _dump(out, top, skip)


def _run(rest: list[str]) -> None:
    if rest[0] == "-m" and len(rest) > 1:
        sys.argv = [rest[1], *rest[2:]]
        sys.path[0] = os.getcwd()
        runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
    elif rest[0] == "-c" and len(rest) > 1:
        sys.argv = ["-c", *rest[2:]]
        sys.path[0] = ""
        exec(compile(rest[1], "<string>", "exec"), {"__name__": "__main__"})
    else:
        sys.argv = list(rest)
        sys.path[0] = os.path.dirname(os.path.abspath(rest[0]))
        runpy.run_path(rest[0], run_name="__main__")

if __name__ == "__main__":
    main()
