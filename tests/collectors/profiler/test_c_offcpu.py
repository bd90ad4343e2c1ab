"""Beyond CPU (part C): off-CPU classes and hints on a real process with waiting threads, the per-thread /proc
accounting, and the leak trend on a real process that grows and one that does not."""

from __future__ import annotations

import os
import threading
import time

import pytest

from collectors.profiler.memory import MemorySampler, leak_trend, read_rollup
from collectors.profiler.model import Frame, Profile, ProfileMeta
from collectors.profiler.offcpu import bottleneck_hints, classify, offcpu_shares, snapshot, thread_deltas
from collectors.profiler.sampler import SamplerOptions, record_pid
from tests.collectors.profiler._c_support import python_proc

WAITERS = """
    import os, queue, socket
    held = threading.Lock(); held.acquire()
    q = queue.Queue()
    a, b = socket.socketpair()
    r, w = os.pipe()
    def locker():
        held.acquire()
    def sleeper():
        while True:
            time.sleep(0.5)
    def reader():
        a.recv(1024)
    def getter():
        q.get()
    def piper():
        os.read(r, 10)
    for fn in (locker, sleeper, reader, getter, piper):
        threading.Thread(target=fn, name=fn.__name__, daemon=True).start()
    print("READY", flush=True)
    busy(time.monotonic() + 50)
"""

EXPECTED = {"locker": "lock wait", "sleeper": "sleep", "reader": "socket I/O", "getter": "queue get",
            "piper": "file I/O", "MainThread": "cpu"}


@pytest.mark.slow
def test_wall_mode_classes_each_waiting_thread_and_hints_name_the_waits(tmp_path):
    with python_proc(tmp_path, WAITERS) as proc:
        prof = record_pid(proc.pid, 3, SamplerOptions(mode="wall", rate_hz=50))
    by_thread: dict[str, dict[str, int]] = {}
    for stack, count in prof.stacks():
        name = stack[0].function.split(": ", 1)[1]
        cls = classify(stack)
        by_thread.setdefault(name, {}).setdefault(cls, 0)
        by_thread[name][cls] += count
    for name, cls in EXPECTED.items():
        assert max(by_thread[name], key=by_thread[name].get) == cls, (name, by_thread[name])
    shares = offcpu_shares(prof)
    for cls in ("lock wait", "sleep", "socket I/O", "queue get", "file I/O", "cpu"):
        assert shares[cls] > 5, shares
    hints = bottleneck_hints(prof)
    text = "\n".join(hints)
    assert "of wall time waiting on a queue get in `Queue.get`" in text, hints
    assert "of wall time sleeping in `sleeper`" in text and "waiting on socket I/O in `reader`" in text
    assert "waiting on a lock in `locker`" in text and "in file I/O in `piper`" in text
    pcts = [float(h.split(" %")[0]) for h in hints if "of wall time" in h]
    assert pcts == sorted(pcts, reverse=True) and all(10 <= p <= 25 for p in pcts[:5]), hints
    # the per-thread accounting joins by tid: the sleeper switched voluntarily, the main thread ran
    names = {label.split("(")[1].split(")")[0]: label.split(": ", 1)[1] for label in prof.threads()}
    rows = {names[tid]: row for tid, row in prof.meta.threads.items() if tid in names}
    assert rows["sleeper"]["voluntary_ctxt"] >= 4 and rows["sleeper"]["oncpu_pct"] < 5
    assert rows["MainThread"]["oncpu_pct"] > 20 and rows["reader"]["oncpu_ms"] < 5
    assert prof.meta.threads["process"]["threads"] == 7  # main, five waiters, the watchdog


def test_a_cpu_mode_profile_gets_no_wait_hints_and_a_starved_thread_gets_one():
    prof = Profile(ProfileMeta(mode="cpu"))
    prof.add([Frame("thread (7): w", kind="thread"), Frame("sleeper", "/x/app.py", 3)], 10)
    assert bottleneck_hints(prof) == []
    prof.meta.threads = {"7": {"runq_wait_pct": 35.0}, "process": {"runq_wait_pct": 99.0}}
    assert bottleneck_hints(prof) == ["thread 7 (w) waited 35 % of the window for a CPU (run queue): the host or "
                                      "its cgroup has too little CPU for it"]


def test_classify_reads_source_lines_of_regular_py_files_only(tmp_path):
    src = tmp_path / "app.py"
    src.write_text("import time\ndef f():\n    time.sleep(1)\n    data = fh.read()\n    x = 1\n")
    assert classify([Frame("f", str(src), 3)]) == "sleep"
    assert classify([Frame("f", str(src), 4)]) == "file I/O"
    assert classify([Frame("f", str(src), 5)]) == "cpu"
    assert classify([Frame("f", "/dev/null.py", 3)]) == "cpu"
    assert classify([Frame("poll", "/usr/lib/python3.11/selectors.py", 468)]) == "socket I/O"
    assert classify([Frame("memcpy", "libc.so.6", 0, "native")]) == "cpu"


def test_thread_deltas_are_per_tid_with_process_io(tmp_path):
    before = snapshot(os.getpid())
    (tmp_path / "f").write_bytes(b"x" * 100_000)
    t_end = time.monotonic() + 0.3
    while time.monotonic() < t_end:
        pass
    after = snapshot(os.getpid())
    rows = thread_deltas(before, after)
    me = rows[str(threading.get_native_id())]
    assert me["oncpu_ms"] > 100 and me["oncpu_pct"] > 30
    assert rows["process"]["wchar"] >= 100_000 and rows["process"]["wall_ms"] >= 300


GROWER = """
    blobs = []
    print("READY", flush=True)
    while True:
        blobs.append(b"x" * 400_000)
        time.sleep(0.1)
"""
SAWTOOTH = """
    print("READY", flush=True)
    while True:
        blob = b"x" * 8_000_000
        time.sleep(0.3)
        del blob
        time.sleep(0.3)
"""


def _watch(proc, seconds: float = 4.0) -> list[dict[str, float]]:
    mem = MemorySampler(proc.pid)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        mem.sample()
        time.sleep(0.2)
    return mem.samples


@pytest.mark.slow
def test_a_steadily_growing_process_is_a_possible_leak_and_a_sawtooth_is_not(tmp_path):
    with python_proc(tmp_path, GROWER, name="grow.py") as proc:
        grows = leak_trend(_watch(proc))
    assert grows.possible_leak and grows.slope_mb_h > 1000 and grows.r2 > 0.9, grows
    assert grows.verdict.startswith("possible leak: +")
    with python_proc(tmp_path, SAWTOOTH, name="saw.py") as proc:
        saw = leak_trend(_watch(proc))
    assert not saw.possible_leak and saw.verdict.startswith("no steady growth"), saw


def test_a_step_or_too_few_points_is_no_leak():
    step = [{"t": float(i), "rss_mb": 100.0 if i < 10 else 150.0} for i in range(20)]
    assert not leak_trend(step).possible_leak
    ramp = [{"t": float(i), "rss_mb": 100.0 + 2 * i} for i in range(20)]
    assert leak_trend(ramp).possible_leak and leak_trend(ramp).slope_mb_h == pytest.approx(7200)
    assert not leak_trend(ramp[:4]).possible_leak
    assert read_rollup(os.getpid())["rss_mb"] > 1
    assert read_rollup(2**22 + 12345) is None
