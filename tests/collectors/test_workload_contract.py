"""The workload contract, run over every workload kind of the registry (like a storage test case).

Every kind (``oltp``, ``passive`` and the six tools) is built from
:mod:`collectors.workloads.registry` and must honour the same contract:

* built from the registry, not started: the right class, ``kind`` set, the
  :class:`~collectors.workloads.base.Workload` protocol, ``metric_names()``
  declared (unique, each with a documented unit or description), nothing
  running, no scratch directory, ``stop()`` idempotent;
* started for real on 127.0.0.1 (bounded: a 0.5 s warm-up and a 1.5 s
  window, rounded up by the tools that take whole seconds; redis-benchmark by
  its request count): ``start`` returns the tuned pids (passive: the observed
  ones) with the caller's ``preexec_fn`` run in the first one, a second
  ``start`` is refused, scratch directories exist while running;
* one short ``measure`` returns a :class:`~collectors.workloads.base.Measurement`
  with exactly the declared metric keys, finite values except where
  :data:`MAY_BE_NAN` documents a NaN, a unit for every metric (in
  ``Measurement.units`` or :data:`~collectors.workloads.base.COMMON_METRICS`,
  except where :data:`UNITLESS` documents none), the throughput unit the kind
  declares, a ``t_s`` timeline where the kind has one, no errors;
* ``stop`` leaves no process behind (passive: the observed process keeps
  running, untouched), deletes the scratch directories, leaves nothing in the
  shared temp directories, and is idempotent.

The OLTP and passive cases are quick and run in the fast tier; the six tools'
real runs are marked ``slow`` (each needs its binary and skips naming its
Debian package when missing; pgbench also needs root and the ``postgres``
user). A failing preexec stops a tool before it runs: fast, except pgbench's
(initdb comes first). Tool-specific
behaviour (parsers on recorded outputs, option errors, holder attributes, the
server-death message) stays in the per-tool tests.
"""

from __future__ import annotations

import http.server
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from collectors.errors import WorkloadError
from collectors.passive.allowed import PassivePolicy
from collectors.workloads.base import COMMON_METRICS, Measurement, Workload
from collectors.workloads.registry import TOOL_WORKLOADS, WORKLOADS, build_workload, workload_metric_docs
from collectors.workloads.tools.adapter import DEBIAN_PACKAGES
from collectors.workloads.tools.pgbench import PgbenchWorkload

REPO = Path(__file__).resolve().parents[2]
TOOLS = sorted(TOOL_WORKLOADS)
KINDS = ["oltp", "passive", *TOOLS]

#: options each kind is built with (bounded, small)
OPTIONS: dict[str, dict[str, Any]] = {
    "oltp": {"workers": 1, "clients": 2},
    "fio": {"size": "16M"},
    "pgbench": {"clients": 2, "scale": 1},
    "redis-benchmark": {"requests": 3000},
    "wrk": {},
    "iperf3": {},
    "stress-ng": {"stressor": "cpu"},
}
#: the unit of ``throughput`` per kind (passive without a scrape reports none)
THROUGHPUT_UNIT = {"oltp": "req/s", "fio": "ops/s", "pgbench": "tx/s", "redis-benchmark": "ops/s", "wrk": "req/s",
                   "iperf3": "bit/s", "stress-ng": "bogo-ops/s"}
#: kinds whose Measurement carries a per-interval timeline
TIMELINE = {"oltp", "passive", "pgbench", "iperf3"}
#: metrics documented to be NaN in a window this short (oltp's throughput_cv needs two whole measured seconds)
MAY_BE_NAN: dict[str, set[str]] = {"oltp": {"throughput_cv"}}
#: metrics documented without a unit (a ratio of two rates)
UNITLESS = {"oltp": {"throughput_cv"}}
BINARIES = {
    "fio": ("fio",), "pgbench": ("pgbench",), "redis-benchmark": ("redis-server", "redis-benchmark"),
    "wrk": ("wrk",), "iperf3": ("iperf3",), "stress-ng": ("stress-ng",),
}
# what a tool could leave outside its workdir if it were misconfigured
_LEFTOVER = re.compile(
    r"^(iperf3\.|fio|stress-ng|dump\.rdb|appendonly|\.s\.PGSQL|index\.html|novatune-(pg|redis-benchmark|iperf3|wrk)-)"
)
_OUTSIDE_DIRS = (Path(tempfile.gettempdir()), Path("/dev/shm"), Path("/var/run/postgresql"), REPO)


def _kinds(*, passive: bool = True, slow: frozenset[str] = frozenset(TOOL_WORKLOADS)) -> list[Any]:
    """The kinds as parameters, those in ``slow`` (by default every real tool) marked slow."""
    return [pytest.param(k, marks=pytest.mark.slow) if k in slow else k for k in KINDS if passive or k != "passive"]


# ------------------------------------------------------------------ helpers


def need(kind: str) -> None:
    """Skip (naming the Debian package) when the kind's tools are not installed or need root."""
    for b in BINARIES.get(kind, ()):
        if shutil.which(b) is None:
            pytest.skip(f"{b} not installed (Debian package: {DEBIAN_PACKAGES.get(b, '?')})")
    if kind == "pgbench":
        if PgbenchWorkload.pg_bindir() is None:
            pytest.skip("initdb not installed (Debian package: postgresql)")
        if os.geteuid() != 0:
            pytest.skip("starts PostgreSQL as user postgres: needs root")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def all_gone(pids: list[int], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def my_children() -> list[int]:
    return [c.pid for c in psutil.Process().children(recursive=True) if alive(c.pid)]


def outside_files() -> set[str]:
    found = set()
    for d in _OUTSIDE_DIRS:
        try:
            found |= {str(d / n) for n in os.listdir(d) if _LEFTOVER.match(n)}
        except OSError:
            pass
    return found


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Case:
    """One kind under test: how to build it, and what the test started around it (passive's target)."""

    kind: str
    options: dict[str, Any]
    #: pids the test owns (passive's observed process): must survive stop(), excluded from the leftovers
    own_pids: list[int] = field(default_factory=list)
    #: passive: the operator's allow-list (the observed process runs this interpreter)
    policy: PassivePolicy | None = None

    def build(self, workdir: Path) -> Workload:
        return build_workload({"kind": self.kind, **self.options}, workdir, policy=self.policy)


@pytest.fixture
def workdir() -> Iterator[Path]:
    # not pytest's tmp_path for the real runs: keep pgbench's conditions as a study has them (a 0755 parent)
    base = Path(tempfile.mkdtemp(prefix="novatune-wc-"))
    os.chmod(base, 0o755)
    try:
        yield base / "w"
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    kind: str = request.param
    if kind != "passive":
        yield Case(kind, dict(OPTIONS[kind]))
        return
    # passive: a process to observe and an HTTP endpoint to probe, both started (and stopped) here
    target = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], stdin=subprocess.DEVNULL)
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield Case("passive", {"pids": [target.pid], "probe_url": f"http://127.0.0.1:{srv.server_address[1]}/",
                               "probe_interval_s": 0.05, "sample_interval_s": 0.25}, own_pids=[target.pid],
                   policy=PassivePolicy.of([f"exe:{os.path.realpath(sys.executable)}"]))
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(5)
        target.kill()
        target.wait(timeout=5)


# ------------------------------------------------------------------ the contract, not started


@pytest.mark.parametrize("case", KINDS, indirect=True)
def test_built_from_the_registry_declares_its_metrics_and_starts_nothing(case: Case, tmp_path: Path) -> None:
    wl = case.build(tmp_path / "w")
    assert type(wl) is WORKLOADS[case.kind] and wl.kind == case.kind
    assert isinstance(wl, Workload)
    names = wl.metric_names()
    assert isinstance(names, tuple) and names and len(names) == len(set(names))
    assert all(isinstance(n, str) and n for n in names)
    if case.kind in THROUGHPUT_UNIT:
        assert names[0] == "throughput"
    docs = workload_metric_docs(wl)
    assert list(docs) == list(names) and all(desc for _, desc in docs.values())
    assert wl.scratch_dirs() == []
    assert wl.pids() == case.own_pids  # passive lists what it observes; the others run nothing yet
    wl.stop()
    wl.stop()  # idempotent without start
    assert not (tmp_path / "w").exists()  # building checks options only


@pytest.mark.parametrize("case", [k for k in KINDS if k != "passive"], indirect=True)
def test_measure_before_start_is_a_workload_error(case: Case, tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="not started"):
        case.build(tmp_path / "w").measure(warmup_s=0, measure_s=1)


def test_unknown_kind_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(WorkloadError, match="unknown workload kind 'ab'; known: oltp, passive, fio"):
        build_workload({"kind": "ab"}, tmp_path)
    assert set(WORKLOADS) == set(KINDS)


# ------------------------------------------------------------------ the contract, for real


def _check_measurement(kind: str, wl: Workload, m: Measurement) -> None:
    assert isinstance(m, Measurement)
    names = wl.metric_names()
    assert set(m.metrics) == set(names)
    nan_ok = MAY_BE_NAN.get(kind, set())
    bad = {k: v for k, v in m.metrics.items() if not isinstance(v, float) or (math.isnan(v) and k not in nan_ok)}
    assert not bad, (bad, m.notes)
    assert set(m.units) <= set(names)
    no_unit = [n for n in names if n not in m.units and n not in COMMON_METRICS and n not in UNITLESS.get(kind, ())]
    assert not no_unit, no_unit
    if kind in THROUGHPUT_UNIT:
        assert m.units["throughput"] == THROUGHPUT_UNIT[kind]
        assert m.metrics["throughput"] > 0 and math.isfinite(m.metrics["throughput"])
    pct = [m.metrics[k] for k in ("latency_p50_ms", "latency_p75_ms", "latency_p90_ms", "latency_p95_ms",
                                   "latency_p99_ms") if k in m.metrics]
    assert all(v > 0 for v in pct) and pct == sorted(pct), pct
    for errors in ("errors", "error_rate", "probe_errors"):
        if errors in m.metrics:
            assert m.metrics[errors] == 0, (errors, m.notes)
    if kind in TIMELINE:
        assert m.timeline is not None and len(m.timeline) >= 1 and m.timeline.index.name == "t_s"
    else:
        assert m.timeline is None
    assert all(isinstance(n, str) for n in m.notes)


def _start(case: Case, wl: Workload, marker: Path) -> list[int]:
    def preexec() -> None:
        with open(marker, "a") as f:
            f.write(f"{os.getpid()}\n")

    pids = wl.start(preexec_fn=preexec)
    assert pids and alive(pids[0])
    assert wl.pids()[0] == pids[0]
    if case.kind == "passive":
        assert pids == case.own_pids and not marker.exists()  # observes, starts nothing
    else:
        assert int(marker.read_text().split()[0]) == pids[0]  # the caller's preexec ran in the tuned process
        with pytest.raises(WorkloadError, match="already started"):
            wl.start()
    return pids


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", _kinds(), indirect=True)
def test_start_measure_stop_leaves_nothing_behind(case: Case, workdir: Path, tmp_path: Path) -> None:
    need(case.kind)
    before = outside_files()
    wl = case.build(workdir)
    every: list[int] = []
    scratch: list[Path] = []
    try:
        pids = _start(case, wl, tmp_path / "preexec.pids")
        scratch = wl.scratch_dirs()
        assert all(d.is_dir() for d in scratch), scratch
        if case.kind == "pgbench":
            assert scratch and not any(d.is_relative_to(workdir) for d in scratch)
        t0 = time.monotonic()
        m = wl.measure(warmup_s=0.5, measure_s=1.5)
        assert time.monotonic() - t0 < 60
        _check_measurement(case.kind, wl, m)
        assert wl.pids()[0] == pids[0] and alive(pids[0])
        every = wl.pids()
    finally:
        wl.stop()
    _check_stopped(case, wl, every, scratch, before)


def _check_stopped(case: Case, wl: Workload, every: list[int], scratch: list[Path], before: set[str]) -> None:
    if case.kind == "passive":
        assert wl.pids() == case.own_pids and all(alive(p) for p in case.own_pids)  # untouched
    else:
        assert wl.pids() == []
        assert all_gone(every), [p for p in every if alive(p)]
    assert wl.scratch_dirs() == [] and not any(d.exists() for d in scratch)
    wl.stop()  # idempotent
    assert sorted(my_children()) == sorted(case.own_pids)
    assert outside_files() - before == set()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", _kinds(passive=False, slow=frozenset({"pgbench"})), indirect=True)
def test_a_failing_preexec_is_a_workload_error_and_leaves_nothing(case: Case, workdir: Path) -> None:
    """The caller's preexec_fn (cgroup placement) failing in the child fails start() cleanly."""
    need(case.kind)

    def boom() -> None:
        raise OSError("cannot join the cgroup")

    before = outside_files()
    wl = case.build(workdir)
    with pytest.raises(WorkloadError, match="preexec_fn"):
        wl.start(preexec_fn=boom)
    assert wl.pids() == [] and wl.scratch_dirs() == []
    wl.stop()
    assert my_children() == []
    assert outside_files() - before == set()
