"""One runner per benchmark group: each measures its benchmarks in ``suite.windows`` windows.

Every runner uses the existing workload adapters (:mod:`collectors.workloads.tools`: stress-ng, fio, iperf3)
or the OLTP service (:class:`collectors.workloads.oltp.OltpWorkload`); the memory kernel is a few lines of
numpy run in a child Python (so that it, too, runs in the benchmark's cgroup). Every process a runner
starts runs ``env.preexec`` first (it joins the benchmark's cgroup), is bounded in time (the adapters'
bounds; :func:`collectors.workloads.process.run_bounded`) and is gone when the runner returns or raises.
What a runner writes lies in ``env.scratch`` (the run's private scratch directory).
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collectors.errors import WorkloadError
from collectors.workloads.process import child_env, run_bounded, stop_process, tail
from collectors.workloads.tools.adapter import AdapterBase, AdapterResult, run_adapter, which_or_error
from collectors.workloads.tools.fio import FioAdapter
from collectors.workloads.tools.iperf3 import Iperf3Adapter
from collectors.workloads.tools.private import server_account
from collectors.workloads.tools.stress_ng import StressNgAdapter
from experiments.bench.suite import Suite

__all__ = ["RUNNERS", "RunEnv", "run_cpu", "run_io", "run_memory", "run_net", "run_oltp"]

#: elements per array of the memory kernel (3 arrays of 128 MiB: far beyond any CPU cache)
TRIAD_ELEMENTS = 16 * 1024 * 1024
_IPERF_PORT = 5201
_SERVER_WAIT_S = 10.0

Progress = Callable[[str, int, float], None]


@dataclass
class RunEnv:
    """What a runner gets: the ``suite``, the private ``scratch`` directory, the ``preexec`` every child
    runs (joins the cgroup; None: no cgroup), ``progress(benchmark, window, value)`` and ``usage()``, the CPU
    seconds the benchmark's cgroup used so far (None when unknown).

    ``shares`` collects, per CPU-bound benchmark, the CPUs it got in each window (:meth:`cpu_window`): what
    ``bench compare`` uses to tell CPU taken away from the benchmark (a quota, a competing load) from the
    host's own drift in speed (docs/bench.md).
    """

    suite: Suite
    scratch: Path
    preexec: Callable[[], None] | None = None
    progress: Progress = field(default=lambda name, i, v: None)
    own_netns: Callable[[str], Any] = field(default=lambda name: None)  # journal a namespace before it exists
    disown_netns: Callable[[str], Any] = field(default=lambda name: None)  # ... and after it is gone
    usage: Callable[[], float | None] = field(default=lambda: None)
    shares: dict[str, list[float]] = field(default_factory=dict)

    @contextmanager
    def cpu_window(self, *names: str) -> Iterator[None]:
        """Measure the CPUs the cgroup's processes used during the block (CPU seconds / wall seconds) and
        record it as one window's share of each of ``names``; nothing when the cgroup cannot be read."""
        u0, w0 = self.usage(), time.monotonic()
        yield
        u1, w1 = self.usage(), time.monotonic()
        if u0 is not None and u1 is not None and w1 > w0:
            for name in names:
                self.record_share(name, (u1 - u0) / (w1 - w0))

    def record_share(self, name: str, cpus: float) -> None:
        """Append one window's share (CPUs) of ``name``."""
        self.shares.setdefault(name, []).append(round(cpus, 4))

    def record(self, out: dict[str, list[float]], name: str, value: float) -> None:
        """Append ``value`` to ``out[name]`` and report it."""
        out.setdefault(name, []).append(float(value))
        self.progress(name, len(out[name]) - 1, float(value))


def run_cpu(env: RunEnv) -> dict[str, list[float]]:
    """``cpu``: stress-ng's cpu stressor, one worker per online CPU, one run per window (bogo-ops/s).

    Raises:
        AdapterError: stress-ng is missing or failed.
    """
    out: dict[str, list[float]] = {}
    workers = max(1, os.cpu_count() or 1)
    extra = ("--temp-path", str(env.scratch))

    def once(seconds: float) -> AdapterResult:
        report = env.scratch / "stress-ng.yaml"
        report.unlink(missing_ok=True)
        adapter = StressNgAdapter(yaml_path=str(report), stressor="cpu", workers=workers, timeout_s=seconds)
        return run_adapter(adapter, cwd=env.scratch, preexec_fn=env.preexec, extra_args=extra)

    once(max(1.0, env.suite.warmup_s))
    for _ in range(env.suite.windows):
        with env.cpu_window("cpu"):
            res = once(env.suite.window_s)
        env.record(out, "cpu", res.throughput)
    return out


#: the memory kernel, run as ``python -c``: argv = elements, windows, seconds, warm-up seconds; prints a JSON list
#: of [GB/s, CPUs the kernel got] per window (its own CPU time / wall time)
_TRIAD = r"""
import json, sys, time
import numpy as np
n, windows, secs, warm = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
a = np.zeros(n); b = np.full(n, 1.0); c = np.full(n, 2.0); s = 3.0
def window(limit):
    t0 = time.perf_counter(); c0 = time.process_time(); k = 0
    while True:
        np.multiply(c, s, out=a); np.add(a, b, out=a); k += 1
        el = time.perf_counter() - t0
        if el >= limit or k >= 100000:
            return [24.0 * n * k / el / 1e9, (time.process_time() - c0) / el]
window(warm)
print(json.dumps([window(secs) for _ in range(windows)]))
"""


def run_memory(env: RunEnv) -> dict[str, list[float]]:
    """``memory_triad``: the STREAM triad ``a = b + s*c`` on three 128 MiB arrays (numpy), in one child
    Python; GB/s counted as STREAM does (24 bytes per element: two reads and one write).

    Raises:
        WorkloadError: the child failed, printed something else, or overran its bound.
    """
    s = env.suite
    argv = [sys.executable, "-c", _TRIAD, str(TRIAD_ELEMENTS), str(s.windows), repr(s.window_s), repr(s.warmup_s)]
    limit = s.windows * s.window_s + s.warmup_s + 60.0
    try:
        proc = run_bounded(argv, timeout_s=limit, cwd=env.scratch, env=child_env(), preexec_fn=env.preexec)
    except (OSError, subprocess.SubprocessError) as err:
        raise WorkloadError(f"memory benchmark: cannot run the numpy kernel: {err}") from err
    if proc.returncode != 0:
        raise WorkloadError(f"memory benchmark: the numpy kernel exited with {proc.returncode}: {tail(proc.stderr)}")
    try:
        pairs = [(float(v), float(share)) for v, share in json.loads(proc.stdout)]
    except (ValueError, TypeError) as err:
        raise WorkloadError(f"memory benchmark: unexpected output {tail(proc.stdout, 200)!r}") from err
    out: dict[str, list[float]] = {}
    for v, share in pairs:
        env.record(out, "memory_triad", v)
        env.record_share("memory_triad", share)
    return out


def run_io(env: RunEnv) -> dict[str, list[float]]:
    """``io_randread`` (4 KiB random reads, IOPS) and ``io_seqread`` (1 MiB sequential reads, MB/s): fio with
    O_DIRECT on a 256 MiB file in the scratch directory (laid out by a discarded warm-up run).

    Raises:
        AdapterError: fio is missing or failed.
    """
    out: dict[str, list[float]] = {}
    target = str(env.scratch / "fio.dat")
    s = env.suite

    def once(rw: str, bs: str, seconds: float) -> AdapterResult:
        adapter = FioAdapter(filename=target, rw=rw, size="256M", bs=bs, runtime_s=seconds, direct=True)
        return run_adapter(adapter, cwd=env.scratch, preexec_fn=env.preexec)

    once("randread", "4k", max(1.0, s.warmup_s))  # lays the file out
    for _ in range(s.windows):
        env.record(out, "io_randread", once("randread", "4k", s.window_s).throughput)
    for _ in range(s.windows):
        env.record(out, "io_seqread", once("read", "1M", s.window_s).extra["bytes_per_s"] / 1e6)
    return out


@dataclass(frozen=True)
class _InNetns(AdapterBase):
    """An adapter run inside a network namespace: ``prefix + inner.command()``."""

    inner: Iperf3Adapter
    prefix: tuple[str, ...]

    @property
    def tool(self) -> str:
        return self.inner.tool

    def command(self) -> list[str]:
        return [*self.prefix, *self.inner.command()]

    def parse(self, text: str) -> AdapterResult:
        return self.inner.parse(text)

    def max_runtime_s(self) -> float:
        return self.inner.max_runtime_s()


def _start_iperf_server(prefix: list[str], addr: str, preexec: Callable[[], None] | None,
                        ) -> subprocess.Popen[bytes]:
    """``iperf3 -s`` on ``addr`` inside the server namespace, as ``nobody`` (never root); waits until it listens."""
    account = server_account("iperf3", ("nobody",))
    who = ["runuser", "-u", account.pw_name, "--"] if account is not None else []
    argv = [which_or_error("iperf3", "ip"), *prefix[1:], *who, "iperf3", "-s", "--forceflush", "-B", addr,
            "-p", str(_IPERF_PORT)]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd="/", preexec_fn=preexec, process_group=0)  # noqa: PLW1509 - joins the cgroup
    assert proc.stdout is not None
    buf = b""
    deadline = time.monotonic() + _SERVER_WAIT_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"listening" not in buf:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop_process(proc, grace_s=2.0)
                raise WorkloadError(f"iperf3 server in the namespace did not start: {tail(buf)}")
            if sel.select(timeout=0.2):
                buf += os.read(proc.stdout.fileno(), 4096)
    return proc


def run_net(env: RunEnv) -> dict[str, list[float]]:
    """``net_tcp``: iperf3 TCP throughput (Gbit/s, receiver side) from one namespace of a fresh pair to the
    other, across their veth pair (:func:`experiments.bench.netns.netns_pair`, always deleted).

    Raises:
        NetnsError: the pair could not be made. AdapterError, WorkloadError: iperf3 failed.
    """
    from experiments.bench.netns import netns_pair

    out: dict[str, list[float]] = {}
    s = env.suite
    with netns_pair(own=env.own_netns, disown=env.disown_netns) as pair:
        server = _start_iperf_server(pair.exec_prefix("a"), pair.addr_a, env.preexec)
        try:
            def once(seconds: float) -> AdapterResult:
                inner = Iperf3Adapter(port=_IPERF_PORT, host=pair.addr_a, duration_s=float(max(1, round(seconds))))
                return run_adapter(_InNetns(inner, tuple(pair.exec_prefix("b"))), preexec_fn=env.preexec)

            once(s.warmup_s)
            for _ in range(s.windows):
                env.record(out, "net_tcp", once(s.window_s).throughput / 1e9)
        finally:
            stop_process(server, grace_s=5.0)
    return out


def run_oltp(env: RunEnv) -> dict[str, list[float]]:
    """``oltp_throughput`` (req/s) and ``oltp_p95`` (ms): the built-in OLTP service
    (:class:`collectors.workloads.oltp.OltpWorkload`, 2 workers, 8 clients), server in the cgroup, one
    load-generator run per window.

    Raises:
        WorkloadError: the service or the load generator failed.
    """
    from collectors.workloads.oltp import OltpWorkload

    out: dict[str, list[float]] = {}
    s = env.suite
    svc = OltpWorkload(env.scratch / "oltp", workers=2, clients=8)
    try:
        svc.start(preexec_fn=env.preexec)
        svc.measure(warmup_s=0.0, measure_s=max(1.0, s.warmup_s))
        for _ in range(s.windows):
            with env.cpu_window("oltp_throughput", "oltp_p95"):  # the server's share (it runs in the cgroup)
                res = svc.measure(warmup_s=0.0, measure_s=s.window_s)
            env.record(out, "oltp_throughput", res.throughput_rps)
            env.record(out, "oltp_p95", res.latency_p95_ms)
    finally:
        svc.stop()
    return out


#: group -> runner
RUNNERS: dict[str, Callable[[RunEnv], dict[str, list[float]]]] = {
    "cpu": run_cpu, "memory": run_memory, "io": run_io, "net": run_net, "oltp": run_oltp,
}
