"""PassiveWorkload against real processes, a real cgroup and servers started on 127.0.0.1."""

from __future__ import annotations

import http.server
import math
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from collectors.errors import CollectorError, WorkloadError
from collectors.passive.allowed import PassivePolicy
from collectors.passive.target import PassiveWorkload as _PassiveWorkload
from collectors.workloads.base import Measurement, Workload

BURN = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n    pass\n"
SLEEP = "import time\ntime.sleep({s})\n"
# burns CPU and keeps touching fresh memory: a cgroup v1 memory controller charges pages when they are
# allocated, not when the process moves in, so a child that only reuses old pages would read 0 bytes
BURN_ALLOC = ("import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end:\n"
              "    buf = bytearray(4 << 20)\n    t = time.monotonic() + 0.05\n    while time.monotonic() < t:\n"
              "        pass\n")


#: the operator's allow-list of these tests: the processes they start run this interpreter
ALLOW_PYTHON = PassivePolicy.of([f"exe:{os.path.realpath(sys.executable)}"])


def PassiveWorkload(**kwargs: object) -> _PassiveWorkload:  # the class, with the tests' allow-list
    kwargs.setdefault("policy", ALLOW_PYTHON)
    return _PassiveWorkload(**kwargs)  # type: ignore[arg-type]


def _allow_cgroup(name: str) -> PassivePolicy:
    return PassivePolicy.of([f"cgroup:/{name}"])


def _spawn(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)


def _reap(*procs: subprocess.Popen) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=5)


@pytest.fixture
def burner():
    p = _spawn(BURN.format(s=8))
    yield p
    _reap(p)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/fail":
            self.send_response(503)
            self.end_headers()
            return
        time.sleep(0.005)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    t.join(5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ options
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "at least one source"),
        ({"pids": [os.getpid()], "cgroup": "x"}, "pids or cgroup, not both"),
        ({"pids": []}, "pids must be a non-empty list"),
        ({"pids": [0]}, "pids must be"),
        ({"pids": [True]}, "pids must be"),
        ({"pids": "123"}, "pids must be"),
        ({"cgroup": "../etc"}, "cgroup must be"),
        ({"cgroup": ""}, "cgroup must be"),
        ({"probe_url": "ftp://127.0.0.1/"}, "probe_url must be http"),
        ({"probe_url": "http://127.0.0.1/", "probe_interval_s": -1}, r"probe_interval_s must be .*\[0, 60\]"),
        ({"probe_url": "http://127.0.0.1/", "probe_timeout_s": 0}, r"probe_timeout_s must be .*\(0, 60\]"),
        ({"probe_url": "http://127.0.0.1/", "probe_timeout_s": math.nan}, "probe_timeout_s"),
        ({"scrape_url": "http://127.0.0.1/metrics"}, "scrape_url needs throughput_counter"),
        ({"scrape_url": "127.0.0.1/metrics", "throughput_counter": "x_total"}, "scrape_url must be http"),
        ({"pids": [os.getpid()], "throughput_counter": "x_total"}, "need scrape_url"),
        ({"scrape_url": "http://127.0.0.1/m", "throughput_counter": "bad name"}, "throughput_counter must be"),
        ({"scrape_url": "http://127.0.0.1/m", "throughput_counter": "a", "error_counter": "1x"}, "error_counter"),
        ({"pids": [os.getpid()], "sample_interval_s": 0.01}, r"sample_interval_s must be .*\[0.1, 10\]"),
    ],
)
def test_options_are_validated_eagerly(kwargs, match):
    with pytest.raises(CollectorError, match=match):
        PassiveWorkload(**kwargs)


def test_metric_names_follow_the_configured_sources():
    assert PassiveWorkload(pids=[os.getpid()]).metric_names() == (
        "target_cpu_pct", "target_rss_bytes", "target_threads", "target_ctx_switches_per_s",
        "target_read_bytes_per_s", "target_write_bytes_per_s",
    )
    cg = PassiveWorkload(cgroup="somewhere").metric_names()
    assert "target_throttled_pct" in cg and "target_memory_bytes" in cg and "target_rss_bytes" not in cg
    probe_only = PassiveWorkload(probe_url="http://127.0.0.1:1/").metric_names()
    assert set(probe_only) == {"latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_avg_ms",
                               "probe_requests", "probe_errors", "probe_error_rate", "error_rate"}
    assert PassiveWorkload(scrape_url="http://127.0.0.1:1/m", throughput_counter="r_total").metric_names() == (
        "throughput",)
    both = PassiveWorkload(scrape_url="http://127.0.0.1:1/m", throughput_counter="r", error_counter="e")
    assert both.metric_names() == ("throughput", "scrape_errors", "error_rate")


def test_measure_rejects_bad_durations():
    wl = PassiveWorkload(probe_url="http://127.0.0.1:1/")
    for kw in ({"warmup_s": -1, "measure_s": 1}, {"warmup_s": 0, "measure_s": 0},
               {"warmup_s": 0, "measure_s": math.inf}):
        with pytest.raises(ValueError, match="_s must be in"):
            wl.measure(**kw)


# ------------------------------------------------------------------ pids
def test_cpu_burning_child_is_measured(burner):
    wl = PassiveWorkload(pids=[burner.pid], sample_interval_s=0.25)
    assert isinstance(wl, Workload) and wl.kind == "passive"
    assert wl.start(preexec_fn=lambda: None) == [burner.pid]
    t0 = time.monotonic()
    m = wl.measure(warmup_s=0.2, measure_s=1.5)
    took = time.monotonic() - t0
    assert isinstance(m, Measurement) and 1.6 <= took < 4
    assert set(m.metrics) == set(wl.metric_names())
    assert m.metrics["target_cpu_pct"] > 30  # a busy loop on a 2-CPU VM
    assert m.metrics["target_rss_bytes"] > 1e6 and m.metrics["target_threads"] >= 1
    assert m.units["target_cpu_pct"] == "%" and m.units["target_rss_bytes"] == "bytes"
    tl = m.timeline
    assert tl is not None and tl.index.name == "t_s" and list(tl.columns) == list(wl.metric_names())
    assert tl.index[0] == pytest.approx(0, abs=0.1) and tl.index[-1] == pytest.approx(1.5, abs=0.2)
    assert 5 <= len(tl) <= 9 and (tl["target_cpu_pct"].dropna() > 0).all()
    wl.stop()
    wl.stop()


def test_pids_include_descendants():
    parent = _spawn(
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(8)'])\n"
        "print(c.pid, flush=True)\n"
        "time.sleep(8)\n"
        "c.kill()\n"
    )
    try:
        wl = PassiveWorkload(pids=[parent.pid])
        deadline = time.monotonic() + 5
        pids = wl.start()
        while len(pids) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = wl.pids()
        assert parent.pid in pids and len(pids) == 2
        # the child given too is counted once (it is inside the parent's tree)
        child = next(p for p in pids if p != parent.pid)
        wl2 = PassiveWorkload(pids=[parent.pid, child])
        wl2.start()
        m = wl2.measure(warmup_s=0, measure_s=0.6)
        assert m.metrics["target_threads"] >= 2
        assert any("descendant" in n for n in m.notes)
    finally:
        for p in PassiveWorkload(pids=[parent.pid]).pids()[::-1]:
            if p != parent.pid:
                try:
                    os.kill(p, 9)
                except ProcessLookupError:
                    pass
        _reap(parent)


def test_a_pid_that_exits_mid_window_ends_it_early_with_a_clear_error():
    p = _spawn(SLEEP.format(s=1.0))
    try:
        wl = PassiveWorkload(pids=[p.pid], sample_interval_s=0.2)
        wl.start()
        t0 = time.monotonic()
        with pytest.raises(WorkloadError, match=rf"process {p.pid} exited .* s into the 8 s window.*ended early"):
            wl.measure(warmup_s=0, measure_s=8)  # the child stays a zombie until reaped: still "exited"
        assert time.monotonic() - t0 < 3
        assert wl.pids() == []
    finally:
        _reap(p)


def test_start_refuses_a_pid_that_is_not_running():
    p = _spawn("pass")
    p.wait(timeout=5)
    with pytest.raises(WorkloadError, match=rf"pids: process {p.pid} is not running"):
        PassiveWorkload(pids=[p.pid]).start()


# ------------------------------------------------------------------ cgroup
def _cgroup_v1_ready() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a cgroup"
    for h in ("cpu", "cpuacct", "memory"):
        if not Path(f"/sys/fs/cgroup/{h}/cgroup.procs").exists():
            return f"cgroup v1 {h} hierarchy not mounted at /sys/fs/cgroup/{h}"
    return None


@pytest.fixture
def cgroup_with_child():
    reason = _cgroup_v1_ready()
    if reason:
        pytest.skip(reason)
    name = f"novatune-test-{uuid.uuid4().hex[:8]}"
    dirs = [Path(f"/sys/fs/cgroup/{h}/{name}") for h in ("cpu", "cpuacct", "memory")]
    made: list[Path] = []
    child = None
    try:
        for d in dirs:
            d.mkdir()
            made.append(d)
        child = _spawn(BURN_ALLOC.format(s=8))
        for d in dirs:
            (d / "cgroup.procs").write_text(str(child.pid))
        yield name, child
    finally:
        if child is not None:
            _reap(child)
        for d in made:
            for _ in range(50):
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
        assert not any(d.exists() for d in made), "test cgroup left behind"


def test_cgroup_target_is_measured(cgroup_with_child):
    name, child = cgroup_with_child
    wl = PassiveWorkload(cgroup=f"/sys/fs/cgroup/cpu/{name}", sample_interval_s=0.25, policy=_allow_cgroup(name))
    assert wl.start() == [child.pid]
    m = wl.measure(warmup_s=0, measure_s=1.2)
    assert set(m.metrics) == set(wl.metric_names())
    assert m.metrics["target_cpu_pct"] > 30
    assert m.metrics["target_memory_bytes"] > 0  # from the memory hierarchy at the same path
    assert m.metrics["target_threads"] >= 1
    assert m.metrics["target_throttled_pct"] == 0  # no quota set
    assert m.timeline is not None and len(m.timeline) >= 4


def test_cgroup_removed_mid_window_ends_it_early(cgroup_with_child):
    name, child = cgroup_with_child
    path = Path(f"/sys/fs/cgroup/cpu/{name}")
    wl = PassiveWorkload(cgroup=str(path), sample_interval_s=0.2, policy=_allow_cgroup(name))
    wl.start()

    def remove() -> None:
        time.sleep(0.6)
        Path("/sys/fs/cgroup/cpu/cgroup.procs").write_text(str(child.pid))  # move it out, then remove
        for _ in range(20):
            try:
                path.rmdir()
                return
            except OSError:
                time.sleep(0.05)

    t = threading.Thread(target=remove)
    t.start()
    try:
        with pytest.raises(WorkloadError, match=rf"cgroup {path} was removed .* s into the 8 s window"):
            wl.measure(warmup_s=0, measure_s=8)
    finally:
        t.join(5)
    assert wl.pids() == []


def test_missing_cgroup_files_are_noted_once_not_per_sample():
    reason = _cgroup_v1_ready()
    if reason:
        pytest.skip(reason)
    if Path("/sys/fs/cgroup/cpu/cpuacct.usage").exists():
        pytest.skip("cpu and cpuacct are co-mounted here: a cpu-only cgroup has its usage counter")
    path = Path(f"/sys/fs/cgroup/cpu/novatune-test-{uuid.uuid4().hex[:8]}")
    path.mkdir()  # only in the cpu hierarchy: no cpuacct.usage, no memory, no blkio counterpart
    try:
        m = PassiveWorkload(cgroup=str(path), sample_interval_s=0.1,
                            policy=_allow_cgroup(path.name)).measure(warmup_s=0, measure_s=0.6)
        assert math.isnan(m.metrics["target_cpu_pct"]) and math.isnan(m.metrics["target_memory_bytes"])
        assert m.metrics["target_threads"] == 0  # empty, but present
        assert m.timeline is not None and len(m.timeline) >= 5
        assert sum("target_cpu_pct" in n for n in m.notes) == 1
        assert sum("memory.usage_in_bytes" in n for n in m.notes) == 1
        assert len(m.notes) == len(set(m.notes)) <= 4
    finally:
        path.rmdir()


def test_start_refuses_a_missing_cgroup():
    with pytest.raises(WorkloadError, match="cgroup .*does not exist"):
        PassiveWorkload(cgroup=f"/sys/fs/cgroup/cpu/novatune-missing-{uuid.uuid4().hex[:8]}").start()


# ------------------------------------------------------------------ probe
def test_probe_reports_ordered_percentiles_and_no_errors(http_server):
    _, url = http_server
    wl = PassiveWorkload(probe_url=f"{url}/", probe_interval_s=0.02)
    assert wl.start() == []
    m = wl.measure(warmup_s=0, measure_s=1.0)
    assert m.metrics["probe_requests"] >= 10 and m.metrics["probe_errors"] == 0
    assert m.metrics["error_rate"] == 0.0
    assert 5 <= m.metrics["latency_p50_ms"] <= m.metrics["latency_p95_ms"] <= m.metrics["latency_p99_ms"]
    assert m.timeline is None


def test_probe_of_error_status_counts_errors(http_server):
    _, url = http_server
    m = PassiveWorkload(probe_url=f"{url}/fail", probe_interval_s=0.05).measure(warmup_s=0, measure_s=0.5)
    assert m.metrics["error_rate"] == 1.0 and m.metrics["probe_requests"] == 0
    assert math.isnan(m.metrics["latency_p95_ms"]) and any("HTTP 503" in n for n in m.notes)


def test_closed_port_is_error_rate_one_not_a_crash():
    url = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(WorkloadError, match="probe_url .* not reachable"):
        PassiveWorkload(probe_url=url).start()
    t0 = time.monotonic()
    m = PassiveWorkload(probe_url=url, probe_interval_s=0, probe_timeout_s=0.5).measure(warmup_s=0, measure_s=0.5)
    assert time.monotonic() - t0 < 2
    assert m.metrics["error_rate"] == 1.0 and m.metrics["probe_errors"] >= 1
    assert 1 <= m.metrics["probe_errors"] <= 15  # paced after each error even with interval 0: no busy loop
    assert math.isnan(m.metrics["latency_p50_ms"])


def test_probe_runs_concurrently_with_target_sampling(http_server, burner):
    _, url = http_server
    wl = PassiveWorkload(pids=[burner.pid], probe_url=f"{url}/", probe_interval_s=0.05)
    wl.start()
    t0 = time.monotonic()
    m = wl.measure(warmup_s=0, measure_s=1.0)
    assert time.monotonic() - t0 < 2.5
    assert m.metrics["target_cpu_pct"] > 0 and m.metrics["probe_requests"] >= 5


# ------------------------------------------------------------------ scrape
@pytest.fixture
def exposition():
    from prometheus_client import CollectorRegistry, Counter, start_http_server

    reg = CollectorRegistry()
    reqs = Counter("app_requests", "Requests.", ["code"], registry=reg)
    errs = Counter("app_failures", "Failures.", registry=reg)
    port = _closed_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=reg)
    stop = threading.Event()

    def tick() -> None:  # 200 requests/s, 10 % of them failures
        end = time.monotonic() + 10
        while not stop.is_set() and time.monotonic() < end:
            reqs.labels(code="200").inc(9)
            reqs.labels(code="500").inc(1)
            errs.inc(1)
            stop.wait(0.05)

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    yield f"http://127.0.0.1:{port}/metrics"
    stop.set()
    ticker.join(5)
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_scrape_gives_throughput_and_error_rate(exposition):
    wl = PassiveWorkload(scrape_url=exposition, throughput_counter="app_requests_total",
                         error_counter="app_failures_total")
    wl.start()
    m = wl.measure(warmup_s=0.1, measure_s=1.5)
    assert m.metrics["throughput"] == pytest.approx(200, rel=0.2)
    assert m.units["throughput"] == "app_requests_total/s"
    assert m.metrics["error_rate"] == pytest.approx(0.1, abs=0.03)
    assert m.metrics["scrape_errors"] == pytest.approx(30, rel=0.25)


def test_scrape_family_name_and_missing_counter(exposition):
    m = PassiveWorkload(scrape_url=exposition, throughput_counter="app_requests").measure(warmup_s=0, measure_s=0.5)
    assert m.metrics["throughput"] > 0
    m = PassiveWorkload(scrape_url=exposition, throughput_counter="nope_total").measure(warmup_s=0, measure_s=0.2)
    assert m.metrics["throughput"] == 0 and any("nope_total not in the exposition" in n for n in m.notes)
    assert any("app_requests_total" in n for n in m.notes)


def test_unreachable_scrape_is_nan_with_a_note():
    url = f"http://127.0.0.1:{_closed_port()}/metrics"
    wl = PassiveWorkload(scrape_url=url, throughput_counter="x_total", scrape_timeout_s=0.5)
    with pytest.raises(WorkloadError, match="scrape_url"):
        wl.start()
    m = wl.measure(warmup_s=0, measure_s=0.2)
    assert math.isnan(m.metrics["throughput"]) and any("scrape at the start" in n for n in m.notes)
