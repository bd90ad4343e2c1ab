"""Passive workload: observe a service that is already running, without driving load.

:class:`PassiveWorkload` implements :class:`collectors.workloads.base.Workload`
(``kind = "passive"``) so that a study can tune knobs for an existing service.
It combines up to three sources:

* a **target** -- ``pids`` (each pid and its descendants) or one ``cgroup``
  (a path as :func:`collectors.metrics.parse_target` accepts) -- sampled with
  :class:`collectors.metrics.MetricsSampler` every ``sample_interval_s``;
* an **HTTP probe** (``probe_url``): one GET at a time, every
  ``probe_interval_s``, during the window -> latency percentiles and error rate;
* a **Prometheus scrape** (``scrape_url`` + ``throughput_counter``, optionally
  ``error_counter``): scraped at the start and the end of the window ->
  ``throughput`` = counter delta / seconds between the two scrapes.

Example::

    wl = PassiveWorkload(cgroup="/sys/fs/cgroup/cpu/myservice",
                         probe_url="http://127.0.0.1:8080/health",
                         scrape_url="http://127.0.0.1:8080/metrics",
                         throughput_counter="http_requests_total")
    wl.start()                      # checks that everything exists now
    m = wl.measure(warmup_s=2, measure_s=10)
    m.metrics["target_cpu_pct"], m.metrics["latency_p95_ms"], m.metrics["throughput"]

Metrics (see :meth:`PassiveWorkload.metric_names`; NaN where unavailable):

* target (pids): ``target_cpu_pct`` (% of ONE CPU, may exceed 100),
  ``target_rss_bytes``, ``target_threads``, ``target_ctx_switches_per_s``,
  ``target_read_bytes_per_s``, ``target_write_bytes_per_s``;
* target (cgroup): ``target_cpu_pct``, ``target_throttled_pct``,
  ``target_throttled_s_per_s``, ``target_threads``, ``target_memory_bytes``,
  ``target_read_bytes_per_s``, ``target_write_bytes_per_s`` -- all read by
  :class:`~collectors.metrics.MetricsSampler` (on cgroup v1 memory and IO come
  from the ``memory`` and ``blkio`` hierarchies at the same relative path, when
  the cgroup exists there; v1 blkio bytes may stay 0 on recent kernels, see
  :mod:`collectors.metrics`);
* probe: ``latency_p50_ms``, ``latency_p95_ms``, ``latency_p99_ms``,
  ``latency_avg_ms``, ``probe_requests`` (answered 2xx/3xx), ``probe_errors``,
  ``probe_error_rate``;
* scrape: ``throughput`` (unit ``"<counter>/s"``), and with ``error_counter``
  ``scrape_errors`` (its delta).
* ``error_rate``: from the scrape when ``error_counter`` is given (the
  service's own view of all its traffic: error delta / throughput-counter
  delta, capped at 1), else from the probe.

Target scalars are means over the window's samples; ``Measurement.timeline``
holds the per-sample values indexed by ``t_s`` (seconds since the window
started; rates at row ``t`` cover the interval ending at ``t``).

A given pid or the cgroup that vanishes (exits, becomes a zombie, is reused,
is removed) during warm-up or the window ends it early with a
:class:`~collectors.errors.WorkloadError` saying what vanished and when. An
unreachable probe URL during the window counts as probe errors; a failed scrape
gives ``throughput`` NaN and a note. Unreadable metric files are reported once
in ``notes``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from collectors.errors import CollectorError, WorkloadError
from collectors.metrics import MetricsSampler, Target, parse_target
from collectors.passive.http_probe import check_http_url, probe
from collectors.passive.scrape import scrape
from collectors.workloads.base import Measurement

__all__ = ["PassiveWorkload"]

MAX_WINDOW_S = 3600.0
MAX_PROBES = 100_000
_COUNTER_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_STEP_S = 0.1  # granularity of waits (liveness checks during warm-up)
_ERROR_PAUSE_S = 0.05  # least pause after a failed probe request

#: MetricsSampler ``target.<label>.<suffix>`` -> (short name, unit, scale)
_PID_COLUMNS: dict[str, tuple[str, str, float]] = {
    "cpu_s_per_s": ("target_cpu_pct", "%", 100.0),
    "rss_bytes": ("target_rss_bytes", "bytes", 1.0),
    "threads": ("target_threads", "1", 1.0),
    "ctx_switches_per_s": ("target_ctx_switches_per_s", "1/s", 1.0),
    "read_bytes_per_s": ("target_read_bytes_per_s", "bytes/s", 1.0),
    "write_bytes_per_s": ("target_write_bytes_per_s", "bytes/s", 1.0),
}
_CGROUP_COLUMNS: dict[str, tuple[str, str, float]] = {
    "cpu_s_per_s": ("target_cpu_pct", "%", 100.0),
    "throttled_pct": ("target_throttled_pct", "%", 1.0),
    "throttled_s_per_s": ("target_throttled_s_per_s", "s/s", 1.0),
    "threads": ("target_threads", "1", 1.0),
    "memory_bytes": ("target_memory_bytes", "bytes", 1.0),
    "read_bytes_per_s": ("target_read_bytes_per_s", "bytes/s", 1.0),
    "write_bytes_per_s": ("target_write_bytes_per_s", "bytes/s", 1.0),
}
_PROBE_METRICS = (
    "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_avg_ms",
    "probe_requests", "probe_errors", "probe_error_rate",
)
_UNITS = {
    "probe_requests": "count", "probe_errors": "count", "probe_error_rate": "ratio",
    "scrape_errors": "count", "error_rate": "ratio",
}


def _err(option: str, allowed: str, got: object) -> CollectorError:
    return CollectorError(f"PassiveWorkload: {option} must be {allowed}, got {got!r}")


def _check_seconds(option: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise _err(option, f"a number of seconds in {bracket}{low:g}, {high:g}]", value)
    return float(value)  # type: ignore[arg-type]


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%H:%M:%SZ")


class _Prober(threading.Thread):
    """One GET at a time (via :func:`probe` with ``count=1``) until stopped or the deadline."""

    def __init__(self, url: str, *, interval_s: float, timeout_s: float, deadline: float, t0: float) -> None:
        super().__init__(name="passive-probe", daemon=True)
        self.url, self.interval_s, self.timeout_s = url, interval_s, timeout_s
        self.deadline, self.t0 = deadline, t0
        self.stop_event = threading.Event()
        self.ok_ms: list[float] = []
        self.errors = 0
        self.last_error: str | None = None
        self.failure: str | None = None

    def run(self) -> None:
        try:
            for _ in range(MAX_PROBES):
                left = self.deadline - time.monotonic()
                if self.stop_event.is_set() or left <= 0:
                    break
                r = probe(self.url, count=1, duration_s=min(3600.0, max(left, 1e-3)), timeout_s=self.timeout_s)
                if r.requests:
                    self.ok_ms.append(r.latency_p50_ms)
                elif r.errors:
                    self.errors += 1
                    self.last_error = r.last_error
                failed = not r.requests
                # also after an error, and never less than _ERROR_PAUSE_S then: no busy loop on a closed port
                self.stop_event.wait(max(self.interval_s, _ERROR_PAUSE_S) if failed else self.interval_s)
        except Exception as err:  # noqa: BLE001 - reported in notes, never lost in a thread
            self.failure = f"{type(err).__name__}: {err}"


class PassiveWorkload:
    """Observe a running target; see the module docstring.

    Args:
        pids: processes to observe (each with its descendants).
        cgroup: a cgroup directory (absolute, or relative to ``/sys/fs/cgroup``
            or its v1 ``cpu`` hierarchy). Exactly one of ``pids``/``cgroup``, or
            neither when a probe or scrape URL is given.
        probe_url: ``http(s)://HOST[:PORT]/PATH`` probed during the window.
        probe_interval_s: pause between two probe requests, in [0, 60] (default 0.1;
            0 = back to back, still one at a time; at least 0.05 s after a failed one).
        probe_timeout_s: per-request timeout, in (0, 60] (default 2.0); a request
            started just before the window's end may extend it by up to this much.
        scrape_url: a Prometheus ``/metrics`` endpoint of the target.
        throughput_counter: counter in that exposition (e.g. ``http_requests_total``;
            samples with that exact name are summed over their labels; a family
            name without ``_total`` is also accepted). Required with ``scrape_url``.
        error_counter: counter of failed events (a subset of the throughput
            counter's events), giving ``scrape_errors`` and ``error_rate``.
        scrape_timeout_s: per-scrape timeout, in (0, 60] (default 5.0).
        sample_interval_s: target sampling period, in [0.1, 10] (default 0.5).

    Raises:
        CollectorError: an option is invalid (the message names it and what is allowed).
    """

    kind = "passive"

    def __init__(
        self,
        *,
        pids: Sequence[int] | None = None,
        cgroup: str | None = None,
        probe_url: str | None = None,
        probe_interval_s: float = 0.1,
        probe_timeout_s: float = 2.0,
        scrape_url: str | None = None,
        throughput_counter: str | None = None,
        error_counter: str | None = None,
        scrape_timeout_s: float = 5.0,
        sample_interval_s: float = 0.5,
    ) -> None:
        if pids is not None:
            if isinstance(pids, (str, bytes)) or not isinstance(pids, Sequence) or not pids or not all(
                isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in pids
            ):
                raise _err("pids", "a non-empty list of positive integer pids", pids)
            pids = list(dict.fromkeys(pids))
        if cgroup is not None and (
            not isinstance(cgroup, str) or not cgroup.strip() or "\0" in cgroup or ".." in Path(cgroup).parts
        ):
            raise _err("cgroup", "a cgroup directory path (absolute or relative to /sys/fs/cgroup, no '..')", cgroup)
        if pids is not None and cgroup is not None:
            raise CollectorError("PassiveWorkload: give pids or cgroup, not both")
        for option, url in (("probe_url", probe_url), ("scrape_url", scrape_url)):
            if url is not None:
                if not isinstance(url, str):
                    raise _err(option, "an http(s):// URL", url)
                check_http_url(url, f"PassiveWorkload: {option} must be http(s)://HOST[:PORT]/PATH")
        for option, name in (("throughput_counter", throughput_counter), ("error_counter", error_counter)):
            if name is not None and (not isinstance(name, str) or not _COUNTER_NAME.match(name)):
                raise _err(option, "a Prometheus metric name ([A-Za-z_:][A-Za-z0-9_:]*)", name)
        if scrape_url is not None and throughput_counter is None:
            raise CollectorError("PassiveWorkload: scrape_url needs throughput_counter (the counter to turn into "
                                 "throughput, e.g. 'http_requests_total')")
        if scrape_url is None and (throughput_counter is not None or error_counter is not None):
            raise CollectorError("PassiveWorkload: throughput_counter and error_counter need scrape_url")
        if pids is None and cgroup is None and probe_url is None and scrape_url is None:
            raise CollectorError("PassiveWorkload: give at least one source: pids, cgroup, probe_url or scrape_url "
                                 "(with throughput_counter)")
        self.pid_list: list[int] | None = pids  # type: ignore[assignment]
        self.cgroup = cgroup
        self.probe_url = probe_url
        self.probe_interval_s = _check_seconds("probe_interval_s", probe_interval_s, 0.0, 60.0)
        self.probe_timeout_s = _check_seconds("probe_timeout_s", probe_timeout_s, 0.0, 60.0, low_open=True)
        self.scrape_url = scrape_url
        self.throughput_counter = throughput_counter
        self.error_counter = error_counter
        self.scrape_timeout_s = _check_seconds("scrape_timeout_s", scrape_timeout_s, 0.0, 60.0, low_open=True)
        self.sample_interval_s = _check_seconds("sample_interval_s", sample_interval_s, 0.1, 10.0)
        self._created: dict[int, float] = {}  # pid -> create_time, when resolved
        self._target: Target | None = None  # the cgroup, when resolved
        self._active: _Prober | None = None
        self._stopped = False

    # ------------------------------------------------------------ protocol
    def metric_names(self) -> tuple[str, ...]:
        """Every metric :meth:`measure` reports with this configuration (all of them, NaN where unavailable)."""
        names: list[str] = []
        if self.pid_list is not None:
            names += [v[0] for v in _PID_COLUMNS.values()]
        elif self.cgroup is not None:
            names += [v[0] for v in _CGROUP_COLUMNS.values()]
        if self.probe_url is not None:
            names += _PROBE_METRICS
        if self.scrape_url is not None:
            names.append("throughput")
            if self.error_counter is not None:
                names.append("scrape_errors")
        if self.probe_url is not None or self.error_counter is not None:
            names.append("error_rate")
        return tuple(names)

    def start(self, *, preexec_fn: Callable[[], None] | None = None) -> list[int]:
        """Check that the target exists now; start nothing; return :meth:`pids`.

        ``preexec_fn`` is ignored: it runs in children *this* workload starts,
        and a passive workload starts none -- the service is already running.
        The trial loop places the existing processes (cgroup, affinity) through
        the pids this returns instead.

        Raises:
            WorkloadError: a pid is not running, the cgroup does not exist, or a
                URL cannot be reached / the scrape is not an exposition.
        """
        del preexec_fn
        self._stopped = False
        self._resolve()
        if self.probe_url is not None:
            try:
                with urllib.request.urlopen(self.probe_url, timeout=self.probe_timeout_s) as resp:
                    resp.read()
            except urllib.error.HTTPError:
                pass  # the server answered: reachable (the status counts as an error in measure)
            except (urllib.error.URLError, OSError, TimeoutError, ValueError) as err:
                raise WorkloadError(f"passive: probe_url {self.probe_url} is not reachable: "
                                    f"{getattr(err, 'reason', err)}") from err
        if self.scrape_url is not None:
            try:
                scrape(self.scrape_url, timeout_s=self.scrape_timeout_s)
            except CollectorError as err:
                raise WorkloadError(f"passive: scrape_url: {err}") from err
        return self.pids()

    def pids(self) -> list[int]:
        """The given pids still alive plus their descendants, or the cgroup's member processes; [] if gone."""
        if self.pid_list is not None:
            out: dict[int, None] = {}
            for pid in self.pid_list:
                if self._alive_reason(pid) is not None:
                    continue
                out[pid] = None
                try:
                    for child in psutil.Process(pid).children(recursive=True):
                        out[child.pid] = None
                except psutil.Error:
                    continue
            return sorted(out)
        if self.cgroup is not None:
            path = self._target.cgroup if self._target is not None else None
            if path is None:
                try:
                    path = parse_target(self.cgroup).cgroup
                except CollectorError:
                    return []
            for name in ("cgroup.procs", "tasks"):
                try:
                    text = (path / name).read_text(encoding="ascii")  # type: ignore[operator]
                except OSError:
                    continue
                return sorted({int(x) for x in text.split() if x.isdigit()})
        return []

    def measure(self, *, warmup_s: float, measure_s: float) -> Measurement:
        """Wait ``warmup_s`` (no load is driven), then observe the target for ``measure_s``.

        Raises:
            ValueError: a duration outside [0, 3600] s (warm-up) / (0, 3600] s (window).
            WorkloadError: a target pid or the cgroup is missing or vanished (the
                message says what and when; the window ended early).
        """
        for name, value, low_open in (("warmup_s", warmup_s, False), ("measure_s", measure_s, True)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or not ((0 < value) if low_open else (0 <= value)) or value > MAX_WINDOW_S:
                raise ValueError(f"{name} must be in {'(' if low_open else '['}0, {MAX_WINDOW_S:g}] s, got {value!r}")
        self._stopped = False
        has_target = self.pid_list is not None or self.cgroup is not None
        if has_target:
            if not self._created and self._target is None:
                self._resolve()
            elif gone := self._vanished():
                raise WorkloadError(f"passive: {gone} before the warm-up started (at {_utc_now()}); "
                                    "nothing was measured")
        notes: list[str] = []
        # ---- warm-up: no load, only watch the target
        t_w = time.monotonic()
        end_w = t_w + warmup_s
        while (now := time.monotonic()) < end_w and not self._stopped:
            gone = self._vanished() if has_target else None
            if gone:
                raise WorkloadError(f"passive: {gone} {now - t_w:.1f} s into the {warmup_s:g} s warm-up "
                                    f"(at {_utc_now()}); nothing was measured")
            time.sleep(min(_STEP_S, end_w - now))
        sampler = self._sampler(notes) if has_target else None
        # ---- window
        before = self._scrape(notes, "start") if self.scrape_url else None
        t0 = time.monotonic()
        deadline = t0 + measure_s
        prober = None
        if self.probe_url is not None:
            prober = _Prober(self.probe_url, interval_s=self.probe_interval_s, timeout_s=self.probe_timeout_s,
                             deadline=deadline, t0=t0)
            self._active = prober
            prober.start()
        rows: list[dict[str, float]] = []
        index: list[float] = []
        gone_msg: str | None = None
        try:
            if sampler is not None:
                next_t = t0
                for _ in range(int(measure_s / self.sample_interval_s) + 3):
                    now = time.monotonic()
                    if now < next_t:
                        time.sleep(next_t - now)
                    t_s = time.monotonic() - t0
                    gone = self._vanished()
                    if gone:
                        gone_msg = gone
                        break
                    try:
                        row = self._row(sampler.sample())
                    except (CollectorError, OSError, ValueError) as err:  # a file vanishing while read
                        gone_msg = self._vanished() or f"the target could not be read ({type(err).__name__}: {err})"
                        break
                    gone = self._vanished(sampler)  # also catches a removal during the read
                    if gone:
                        gone_msg = gone
                        break
                    rows.append(row)
                    index.append(round(t_s, 3))
                    if t_s >= measure_s - 1e-3 or self._stopped:
                        break
                    next_t += self.sample_interval_s
                    if deadline - next_t < self.sample_interval_s / 2:
                        next_t = deadline  # no sliver of an interval at the end
            else:
                while (now := time.monotonic()) < deadline and not self._stopped:
                    time.sleep(min(_STEP_S, deadline - now))
        finally:
            if prober is not None:
                prober.stop_event.set()
                prober.join(self.probe_timeout_s + 2.0)
                self._active = None
        if gone_msg is not None:
            t_s = time.monotonic() - t0
            raise WorkloadError(f"passive: {gone_msg} {t_s:.1f} s into the {measure_s:g} s window "
                                f"(at {_utc_now()}); window ended early after {len(rows)} sample(s)")
        after = self._scrape(notes, "end") if self.scrape_url else None
        metrics: dict[str, float] = {}
        units = {k: v for k, v in _UNITS.items()}
        timeline = None
        if has_target:
            columns = _PID_COLUMNS if self.pid_list is not None else _CGROUP_COLUMNS
            names = [v[0] for v in columns.values()]
            timeline = pd.DataFrame(rows, index=pd.Index(index, name="t_s", dtype=float), columns=names, dtype=float)
            weights = np.diff(np.asarray(index, dtype=float), prepend=index[0] if index else 0.0)
            for name, unit, _ in columns.values():
                metrics[name] = _window_value(timeline[name].to_numpy(dtype=float), weights, gauge=name in _GAUGES)
                units[name] = unit
            if sampler is not None:
                for key, reason in sorted(sampler.gaps.items()):
                    if key.startswith("target."):
                        notes.append(f"unavailable: {key}: {reason}")
            missing = [n for n in names if math.isnan(metrics[n]) and not any(n in note for note in notes)]
            if missing and len(rows) > 1:
                where = f"cgroup {self._target.cgroup}" if self._target is not None else "these pids"
                hint = (" (cgroup v1 CPU usage needs cpuacct.usage, in the cpu directory or at the same path "
                        "under /sys/fs/cgroup/cpuacct)") if "target_cpu_pct" in missing and self._target else ""
                notes.append(f"no value for {', '.join(missing)}: not available for {where}{hint}")
        if prober is not None:
            metrics.update(self._probe_metrics(prober, notes))
        if self.scrape_url is not None:
            metrics.update(self._scrape_metrics(before, after, notes))
            units["throughput"] = f"{self.throughput_counter}/s"
        if self.probe_url is not None and self.error_counter is None:
            metrics["error_rate"] = metrics["probe_error_rate"]
        metrics = {k: metrics.get(k, math.nan) for k in self.metric_names()}
        units = {k: v for k, v in units.items() if k in metrics}
        return Measurement(metrics=metrics, units=units, timeline=timeline, notes=tuple(dict.fromkeys(notes)))

    def stop(self) -> None:
        """Nothing was started, so nothing is stopped; ends an in-flight probe early. Idempotent."""
        self._stopped = True
        if self._active is not None:
            self._active.stop_event.set()

    # ------------------------------------------------------------ internals
    def _alive_reason(self, pid: int) -> str | None:
        """None if ``pid`` runs (and is the process seen at resolution), else why not."""
        try:
            proc = psutil.Process(pid)
            status, created = proc.status(), proc.create_time()
        except psutil.NoSuchProcess:
            return f"process {pid} exited"
        except psutil.Error as err:
            return f"process {pid} cannot be read ({err})"
        if status in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return f"process {pid} exited"
        known = self._created.get(pid)
        if known is not None and abs(known - created) > 0.05:
            return f"process {pid} exited (the pid now belongs to another process)"
        return None

    def _resolve(self) -> None:
        """Check that pids/cgroup exist now and remember their identity. Raises WorkloadError."""
        if self.pid_list is not None:
            self._created = {}
            for pid in self.pid_list:
                reason = self._alive_reason(pid)
                if reason is not None:
                    raise WorkloadError(f"passive: pids: {reason.replace('exited', 'is not running')}")
                try:
                    self._created[pid] = psutil.Process(pid).create_time()
                except psutil.Error as err:
                    raise WorkloadError(f"passive: pids: process {pid} is not running ({err})") from err
        elif self.cgroup is not None:
            try:
                self._target = parse_target(self.cgroup)
            except CollectorError as err:
                raise WorkloadError(f"passive: cgroup {self.cgroup!r} does not exist: {err}") from err

    def _vanished(self, sampler: MetricsSampler | None = None) -> str | None:
        if self.pid_list is not None:
            for pid in self.pid_list:
                reason = self._alive_reason(pid)
                if reason is not None:
                    return reason
        elif self._target is not None and self._target.cgroup is not None and not self._target.cgroup.is_dir():
            return f"cgroup {self._target.cgroup} was removed"
        if sampler is not None:
            for t in sampler.targets:
                if f"target.{t.label}" in sampler.gaps:
                    return sampler.gaps[f"target.{t.label}"]
        return None

    def _sampler(self, notes: list[str]) -> MetricsSampler:
        targets: list[Target] = []
        if self.pid_list is not None:
            covered: set[int] = set()
            for pid in self.pid_list:
                try:
                    covered.update(c.pid for c in psutil.Process(pid).children(recursive=True))
                except psutil.Error:
                    pass
            for pid in self.pid_list:
                if pid in covered:
                    notes.append(f"pid {pid} is a descendant of another given pid: counted once, in that tree")
                else:
                    targets.append(Target(label=f"pid{pid}", pid=pid))
        elif self._target is not None:
            targets.append(self._target)
        try:
            return MetricsSampler(targets=targets, tcp_states_every_s=3600.0)
        except CollectorError as err:  # pragma: no cover - Target objects are not re-checked
            raise WorkloadError(f"passive: {err}") from err

    def _row(self, sample: dict[str, float]) -> dict[str, float]:
        """Sum ``target.<label>.<suffix>`` over targets into the short names (NaN unless every target has it)."""
        columns = _PID_COLUMNS if self.pid_list is not None else _CGROUP_COLUMNS
        per: dict[str, dict[str, float]] = {}
        labels: set[str] = set()
        for key, value in sample.items():
            if not key.startswith("target."):
                continue
            label, _, suffix = key[len("target."):].rpartition(".")
            labels.add(label)
            if suffix in columns:
                per.setdefault(suffix, {})[label] = value
        row: dict[str, float] = {}
        for suffix, (name, _, scale) in columns.items():
            vals = per.get(suffix, {})
            row[name] = scale * sum(vals.values()) if vals and len(vals) == len(labels) else math.nan
        return row

    def _scrape(self, notes: list[str], when: str) -> tuple[float, dict[str, float]] | None:
        assert self.scrape_url is not None and self.throughput_counter is not None
        wanted = [self.throughput_counter] + ([self.error_counter] if self.error_counter else [])
        t_a = time.monotonic()
        try:
            values = scrape(self.scrape_url, timeout_s=self.scrape_timeout_s)
        except CollectorError as err:
            notes.append(f"scrape at the {when} of the window failed: {err}")
            return None
        t = (t_a + time.monotonic()) / 2.0
        out: dict[str, float] = {}
        for name in wanted:
            total, found = _sum_counter(values, name)
            if found:
                out[name] = total
            else:
                known = sorted({k.partition("{")[0] for k in values if k.partition("{")[0].endswith("_total")})
                notes.append(f"counter {name} not in the exposition at the {when} of the window "
                             f"(counted as 0); counters there: {', '.join(known[:10]) or 'none'}")
                out[name] = 0.0
        return t, out

    def _scrape_metrics(self, before: tuple[float, dict[str, float]] | None,
                        after: tuple[float, dict[str, float]] | None, notes: list[str]) -> dict[str, float]:
        assert self.throughput_counter is not None
        out = {"throughput": math.nan}
        if self.error_counter is not None:
            out["scrape_errors"] = math.nan
            out["error_rate"] = math.nan
        if before is None or after is None:
            return out
        seconds = after[0] - before[0]
        d_req = after[1][self.throughput_counter] - before[1][self.throughput_counter]
        if d_req < 0:
            notes.append(f"counter {self.throughput_counter} went backwards (target restarted?): throughput is NaN")
            return out
        out["throughput"] = d_req / seconds if seconds > 0 else math.nan
        if self.error_counter is not None:
            d_err = after[1][self.error_counter] - before[1][self.error_counter]
            if d_err < 0:
                notes.append(f"counter {self.error_counter} went backwards (target restarted?): error_rate is NaN")
                return out
            out["scrape_errors"] = d_err
            if d_req > 0:
                out["error_rate"] = min(1.0, d_err / d_req)
            else:
                out["error_rate"] = 0.0 if d_err == 0 else 1.0
                notes.append(f"counter {self.throughput_counter} did not move during the window (no traffic)")
        return out

    def _probe_metrics(self, prober: _Prober, notes: list[str]) -> dict[str, float]:
        if prober.is_alive():
            notes.append("probe thread did not finish in time; its last request is not counted")
        if prober.failure:
            notes.append(f"probe failed: {prober.failure}")
        lat = np.asarray(list(prober.ok_ms), dtype=float)
        ok, errors = int(lat.size), int(prober.errors)
        total = ok + errors
        if errors:
            notes.append(f"probe {self.probe_url}: {errors} of {total} request(s) failed; last error: "
                         f"{prober.last_error}")
        if total == 0:
            notes.append(f"probe {self.probe_url}: no request completed in the window")
        pct = [float(np.percentile(lat, q)) if lat.size else math.nan for q in (50, 95, 99)]
        return {
            "latency_p50_ms": pct[0], "latency_p95_ms": pct[1], "latency_p99_ms": pct[2],
            "latency_avg_ms": float(lat.mean()) if lat.size else math.nan,
            "probe_requests": float(ok), "probe_errors": float(errors),
            "probe_error_rate": errors / total if total else math.nan,
        }


_GAUGES = frozenset({"target_rss_bytes", "target_threads", "target_memory_bytes"})


def _window_value(col: np.ndarray, weights: np.ndarray, *, gauge: bool) -> float:
    """Gauges: mean of the samples. Rates: time-weighted mean (each row covers the interval ending at it)."""
    ok = ~np.isnan(col)
    if gauge:
        return float(col[ok].mean()) if ok.any() else math.nan
    w = weights[ok]
    if not ok.any() or w.sum() <= 0:
        return math.nan
    return float((col[ok] * w).sum() / w.sum())


def _sum_counter(values: dict[str, float], name: str) -> tuple[float, bool]:
    """Sum the samples named exactly ``name`` (any labels); else ``name + "_total"``."""
    for candidate in (name, name + "_total"):
        hits = [v for k, v in values.items() if k.partition("{")[0] == candidate]
        if hits:
            return float(sum(hits)), True
        if candidate.endswith("_total"):
            break
    return 0.0, False
