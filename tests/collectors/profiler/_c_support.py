"""Real processes for the sampling tests (part C): bounded in time, always killed and reaped."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: a CPU-bound mix: ~70 % / 25 % / 5 % of the time in three leaf functions (one loop, 70:25:5 iterations)
MIX = """
    import sys, threading, time
    def f70():
        x = 0
        for i in range(7000):
            x += i
        return x
    def f25():
        x = 0
        for i in range(2500):
            x += i
        return x
    def f5():
        x = 0
        for i in range(500):
            x += i
        return x
    def busy(end):
        while time.monotonic() < end:
            f70(); f25(); f5()
"""


def pyspy_children(pid: int) -> list[int]:
    """py-spy processes (anywhere) whose command line names ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"py-spy") and str(pid).encode() in argv:
            out.append(int(entry))
    return out


#: every target ends itself after its lifetime, whatever happens to the test
WATCHDOG = """
    import os as _os, threading as _threading
    _w = _threading.Timer({lifetime}, _os._exit, (0,))
    _w.daemon = True
    _w.start()
"""


@contextmanager
def python_proc(tmp_path: Path, body: str, *, lifetime_s: float = 60.0, name: str = "target.py",
                ready: str = "READY") -> Iterator[subprocess.Popen[str]]:
    """Run ``body`` (dedented) as a script after ``MIX``; it must print ``ready`` once set up. It ends
    itself at ``lifetime_s`` and is killed and reaped at the end of the block."""
    script = tmp_path / name
    script.write_text(textwrap.dedent(WATCHDOG.format(lifetime=lifetime_s)) + textwrap.dedent(MIX)
                      + textwrap.dedent(body))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert ready in line, f"target did not start: {line!r} {proc.stderr.read() if proc.poll() else ''}"
        yield proc
    finally:
        proc.kill()
        proc.wait()
