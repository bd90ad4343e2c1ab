"""``novatune profile record|watch|list|show|hotspots`` and ``novatune flamegraph diff``: the CLI twin of
``/profiling``.

``record`` samples one window of a running Python process (``--pid``, which must be an allowed target:
``allowed_targets``) or of a command novatune starts (``-- CMD ...``) with py-spy, stores it in the
profile store and writes it in the format asked; ``watch`` profiles continuously, one window after the
other, each stored as it completes, until Ctrl-C. ``list``, ``show`` and ``hotspots`` read the store (or a
profile file); ``flamegraph diff`` compares two profiles by their shares of samples.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from experiments.cli._common import JsonOpt, UserError, err, out, paths, print_json, settings
from experiments.cli._common import ctrl_c_ends as _ctrl_c_ends

if TYPE_CHECKING:
    from collectors.profiler.model import Profile
    from collectors.profiler.store import ProfileStore

__all__ = ["flamegraph_app", "profile_app"]

profile_app = typer.Typer(no_args_is_help=True, help="Profile Python processes with py-spy: flamegraphs, hotspots.")
flamegraph_app = typer.Typer(no_args_is_help=True, help="Flamegraphs: compare two profiles.")

FormatOpt = Annotated[str, typer.Option("--format", "-f", help="collapsed | speedscope | pprof | svg | html | json")]
OutOpt = Annotated[Path | None, typer.Option("--output", "-o", help="write here (default: standard output)")]


def store() -> ProfileStore:
    """The data directory's profile store, with the settings' retention."""
    from collectors.profiler.store import ProfileStore

    s = settings()
    return ProfileStore(paths().ensure().profiles, retention_days=s.profiling_retention_days,
                        max_bytes=s.profiling_max_bytes)


#: labels that explain (py-spy's flags, the memory trend): in --json, not in the table
_LONG_LABELS = frozenset({"flags", "memory_trend"})


def _check_output(output: Path | None) -> None:
    """Refuse an ``-o`` that cannot be written before any work (a record samples for seconds first).

    Raises:
        UserError: its directory is missing or not a directory, or it names a directory.
    """
    if output is None:
        return
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise UserError(f"cannot write {output}: the directory {parent} does not exist; create it or give -o a "
                        "path in an existing directory")
    if output.is_dir():
        raise UserError(f"cannot write {output}: it is a directory; give -o a file name")


def _emit(data: bytes, output: Path | None, fmt: str) -> None:
    """``data`` to ``output`` (written privately, then renamed) or to standard output (text formats only
    when it is a terminal)."""
    if output is not None:
        from experiments.safefs import write_file

        try:
            write_file(output, data, mode=0o644)
        except OSError as e:
            raise UserError(f"cannot write {output}: {e.strerror or e}") from None
        err.print(f"wrote {escape(str(output))} ({len(data)} bytes, {fmt})")
        return
    if fmt == "pprof" and sys.stdout.isatty():
        raise UserError("pprof is binary: give -o FILE (or redirect standard output)")
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@profile_app.command("record", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
                     options_metavar="(--pid PID | -- CMD ...) [OPTIONS]")
def record_cmd(
    ctx: typer.Context,
    pid: Annotated[int | None, typer.Option("--pid", "-p", help="a running Python process (an allowed target)")] = None,
    duration: Annotated[float, typer.Option("--duration", "-d", help="seconds to sample (1..3600)")] = 10.0,
    rate: Annotated[float, typer.Option("--rate", "-r", help="samples per second (1..1000)")] = 100.0,
    mode: Annotated[str, typer.Option("--mode", help="cpu (running code) | wall (idle threads too)")] = "cpu",
    native: Annotated[bool, typer.Option("--native", help="C/C++ frames of native extensions too")] = False,
    engine: Annotated[str, typer.Option("--engine", help="py-spy (Python processes) | perf (any process: native "
                                                         "and kernel stacks, cpu mode)")] = "py-spy",
    fmt: FormatOpt = "collapsed",
    output: OutOpt = None,
) -> None:
    """Sample one window of a running Python process (--pid PID, an allowed target) or of a command novatune
    starts and stops (-- CMD ...); store it and write it in --format. The stored id is printed on standard
    error; Ctrl-C ends the window early and keeps what was sampled. E.g. `novatune profile record --pid 4242
    -d 30 -f svg -o app.svg`, `novatune profile record -f speedscope -o run.json -- python app.py`."""
    from experiments.profiling.outputs import FORMATS, render
    from experiments.profiling.sessions import record_once

    command = list(ctx.args)
    if (pid is None) == (not command):
        raise UserError("give exactly one target: --pid PID, or -- CMD ... (a command to start and profile)")
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r}; allowed: {', '.join(FORMATS)}")
    _check_output(output)
    stop = threading.Event()
    with _ctrl_c_ends(stop):
        prof, pid_id = record_once(pid=pid, command=command, duration_s=duration, rate_hz=rate, mode=mode,
                                   native=native, engine=engine, settings=settings(), store=store(), stop=stop)
    early = ", stopped early by Ctrl-C" if prof.meta.labels.get("stopped") == "true" else ""
    err.print(f"profile {pid_id}: {prof.total} samples at {prof.meta.rate_hz:g} Hz over {prof.meta.duration_s:.1f} s"
              f" ({prof.meta.mode}{early})", soft_wrap=True)
    _emit(render(prof, fmt, title=f"pid {prof.meta.pid}: {prof.meta.cmdline[:80]}"), output, fmt)


@profile_app.command("watch")
def watch_cmd(
    pid: Annotated[int | None, typer.Option("--pid", "-p", help="a running Python process (an allowed target)")] = None,
    cgroup: Annotated[str | None, typer.Option("--cgroup", help="a cgroup path: its Python processes")] = None,
    window: Annotated[float | None, typer.Option("--window", help="seconds per window (10..60)")] = None,
    rate: Annotated[float, typer.Option("--rate", "-r", help="starting rate, adapted to the budget (5..100)")] = 100.0,
    mode: Annotated[str, typer.Option("--mode", help="cpu | wall")] = "cpu",
    windows: Annotated[int | None, typer.Option("--windows", help="stop after this many windows")] = None,
) -> None:
    """Profile continuously, one window after the other, each stored as it completes, until Ctrl-C (the window
    so far is stored too) or --windows N; the rate adapts to keep the measured overhead under the setting
    profiling_budget_pct. Each window's id, rate and overhead are printed as it is stored."""
    from experiments.profiling.sessions import watch

    if (pid is None) == (cgroup is None):
        raise UserError("give exactly one target: --pid PID or --cgroup PATH")

    def shown(sid: str, prof: Profile) -> None:
        o = prof.meta.overhead
        out.print(f"{sid}  {prof.total:6d} samples  {prof.meta.rate_hz:5.1f} Hz  "
                  f"py-spy {o.get('pyspy_cpu_pct', float('nan')):.2f} % CPU  "
                  f"est. slowdown {o.get('est_slowdown_pct', float('nan')):.2f} %")

    def failed(target: int, error: Exception) -> None:
        err.print(f"pid {target}: no window: {escape(str(error))}", highlight=False, soft_wrap=True)

    s = settings()
    n = watch(pid=pid, cgroup=cgroup, window_s=window or s.profiling_window_s, rate_hz=rate, mode=mode,
              settings=s, store=store(), max_windows=windows, on_window=shown, on_error=failed)
    err.print(f"{n} window{'' if n == 1 else 's'} stored")


@profile_app.command("list")
def list_cmd(
    as_json: JsonOpt = False,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE (repeat: all must match)")] = None,
    limit: Annotated[int, typer.Option("--limit", help="at most this many, newest first (1..10000)")] = 50,
) -> None:
    """Stored profiles, newest first: id, start, seconds, mode, rate, pid, samples, labels."""
    labels = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--label {item!r}: give KEY=VALUE")
        labels[key] = value
    if not 1 <= limit <= 10_000:
        raise UserError(f"--limit {limit}: allowed 1 to 10000")
    rows = [r.to_dict() for r in store().list(labels or None, limit=limit)]
    if as_json:
        print_json(rows)
        return
    table = Table(title="profiles")
    for col in ("id", "start", "s", "mode", "Hz", "pid", "samples", "labels"):
        table.add_column(col, no_wrap=col in ("id", "start"))
    import datetime as dt

    for r in rows:
        start = dt.datetime.fromtimestamp(r["start"], dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(r["id"], start, f"{r['duration_s']:.0f}", r["mode"], f"{r['rate_hz']:g}", str(r["pid"] or "-"),
                      str(r["samples"]), escape(" ".join(f"{k}={v}" for k, v in sorted(r["labels"].items())
                                                         if k not in _LONG_LABELS)))
    out.print(table)


@profile_app.command("show")
def show_cmd(
    ref: Annotated[str, typer.Argument(metavar="ID|FILE", help="a stored profile id, or a profile file")],
    fmt: FormatOpt = "collapsed",
    output: OutOpt = None,
) -> None:
    """A stored profile (an id from `novatune profile list`) or a profile file (collapsed, speedscope, pprof,
    JSON) in --format."""
    from experiments.profiling.outputs import render

    _check_output(output)
    prof = _load(ref)
    _emit(render(prof, fmt, title=ref, header=True), output, fmt)


@profile_app.command("hotspots")
def hotspots_cmd(
    ref: Annotated[str, typer.Argument(metavar="ID|FILE", help="a stored profile id, or a profile file")],
    as_json: JsonOpt = False,
    threshold: Annotated[float, typer.Option("--threshold", help="smallest share shown, percent (0..100)")] = 5.0,
    by: Annotated[Literal["function", "line"], typer.Option("--by", help="function | line")] = "function",
) -> None:
    """Functions (or lines) by self and total share of the samples, most expensive first; with a wall-mode
    profile, where the idle time goes (lock, I/O, sleep, queue)."""
    from collectors.profiler.hotspots import hotspots
    from collectors.profiler.offcpu import bottleneck_hints

    if not 0 <= threshold <= 100:
        raise UserError(f"--threshold {threshold:g}: allowed 0 to 100 (percent)")
    prof = _load(ref)
    rows = [h.to_dict() for h in hotspots(prof, threshold_pct=threshold, by=by)]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"hotspots of {escape(ref)} ({prof.total} samples, {prof.meta.mode})")
    for col in ("function", "file:line", "self %", "total %"):
        table.add_column(col)
    for r in rows:
        table.add_row(escape(r["function"]), escape(f"{r['file']}:{r['line']}"), f"{r['self_pct']:.1f}",
                      f"{r['total_pct']:.1f}")
    out.print(table)
    for hint in bottleneck_hints(prof):
        out.print(f"- {escape(hint)}")


@flamegraph_app.command("diff")
def diff_cmd(
    base: Annotated[str, typer.Argument(metavar="BASE", help="the base profile: a stored id or a profile file")],
    target: Annotated[str, typer.Argument(metavar="TARGET", help="the target profile: a stored id or a profile file")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="svg | html | json")] = "svg",
    output: OutOpt = None,
    noise: Annotated[float, typer.Option("--noise", help="changes of a frame's share below this many "
                                                         "percentage points are neutral (0..50)")] = 0.5,
) -> None:
    """The differential flamegraph of TARGET against BASE: widths from TARGET, colour by the change of each
    frame's share (red grew, blue shrank), vanished frames shown. JSON lists per function base_pct,
    target_pct and delta_pct."""
    from experiments.profiling.outputs import render_diff

    _check_output(output)
    st = store()
    b, t = _load(base, st), _load(target, st)
    _emit(render_diff(b, t, fmt, title=f"{target} against {base}", noise_pct=noise), output, fmt)


def _load(ref: str, st: ProfileStore | None = None) -> Profile:
    from experiments.profiling.outputs import load

    return load(ref, st if st is not None else store())
