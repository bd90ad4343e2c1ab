"""Known profiles the part-A tests (formats, hotspots, readers) share."""

from __future__ import annotations

import os
import shutil

import pytest

from benchmarks._readers import ReaderError, pprof_proto
from collectors.profiler.model import Frame, Profile, ProfileMeta

APP = "/srv/app/app.py"
T1 = Frame("thread (0x1f4a): MainThread", kind="thread")
T2 = Frame("thread (0x2b01): worker-1", kind="thread")
MAIN = Frame("main", APP, 40)
HANDLE = Frame("handle", APP, 12)
PARSE = Frame("parse", APP, 77)
FIB_A = Frame("fib", "/srv/app/maths.py", 3)
FIB_B = Frame("fib", "/srv/app/maths.py", 5)
LEAF = Frame("add", "/srv/app/maths.py", 9)
MALLOC = Frame("malloc", "/usr/lib/x86_64-linux-gnu/libc.so.6", kind="native")
SCHED = Frame("schedule", kind="kernel")
IDLE = Frame("<idle>", kind="other")
ODD = Frame('na"me\\ é;x', "/srv/app/weird path.py", 1)  # quotes, backslash, non-ASCII, ';'


def known_profile(*, rate_hz: float = 100.0, threads: bool = True) -> Profile:
    """Eight distinct stacks over two threads: recursion, native, kernel and odd names, 1000 samples."""
    meta = ProfileMeta(mode="cpu", engine="py-spy", rate_hz=rate_hz, start=1_700_000_000.25, duration_s=10.0,
                       pid=4242, cmdline="python app.py", labels={"study": "s1", "trial": "3"},
                       overhead={"pyspy_cpu_pct": 0.4})
    prof = Profile(meta)
    rows = [
        ([T1, MAIN, HANDLE, PARSE], 400),
        ([T1, MAIN, HANDLE], 100),
        ([T1, MAIN, FIB_A, FIB_B, FIB_B, LEAF], 150),
        ([T1, MAIN, FIB_A, FIB_B], 50),
        ([T2, MAIN, HANDLE, MALLOC], 120),
        ([T2, MAIN, SCHED], 80),
        ([T2, IDLE], 60),
        ([T2, MAIN, ODD], 40),
    ]
    for stack, count in rows:
        prof.add(stack[1:] if not threads else stack, count)
    return prof


def mix_profile(*, rate_hz: float = 100.0) -> Profile:
    """The synthetic 70 / 25 / 5 mix: ``hot``, ``warm``, ``cold`` under ``main`` in one thread."""
    prof = Profile(ProfileMeta(rate_hz=rate_hz, duration_s=10.0))
    main = Frame("main", "/srv/mix.py", 50)
    for name, line, count in (("hot", 10, 700), ("warm", 20, 250), ("cold", 30, 50)):
        prof.add([T1, main, Frame(name, "/srv/mix.py", line)], count)
    return prof


def stack_counts(prof: Profile) -> dict[tuple[Frame, ...], int]:
    """``stack -> count``, independent of frame ids and insertion order."""
    out: dict[tuple[Frame, ...], int] = {}
    for stack, count in prof.stacks():
        out[stack] = out.get(stack, 0) + count
    return out


def need_protoc() -> None:
    """Skips (fails in CI, which installs them) when protoc or google/pprof's profile.proto is missing."""
    try:
        pprof_proto()
        missing = "" if shutil.which("protoc") else "protoc (protobuf-compiler)"
    except ReaderError as err:
        missing = str(err)
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI installs the pprof reader, but it is missing: {missing}")
        pytest.skip(f"the pprof reader is missing: {missing}")
