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

Which targets are allowed is :class:`~collectors.passive.allowed.PassivePolicy`'s rule (``policy``;
strict by default: nothing is a target until the operator names it in ``allowed_targets``, and pid 1,
kernel threads, novatune itself and the root cgroup never are), checked by :meth:`check_target` when a
study is prepared, at :meth:`start`, and each time :meth:`pids` lists what knobs act on. URLs follow
:mod:`~collectors.passive.http_probe`'s outbound rule (loopback, or ``allowed_probe_hosts``).

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
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

from collectors.errors import CollectorError, WorkloadError
from collectors.metrics import MetricsSampler, Target, parse_target
from collectors.passive.allowed import PassivePolicy
from collectors.passive.http_probe import check_url, fetch
from collectors.passive.scrape import scrape
from collectors.passive.window import (
    CGROUP_COLUMNS,
    GAUGES,
    PID_COLUMNS,
    PROBE_METRICS,
    Prober,
    Scraped,
    probe_metrics,
    scrape_metrics,
    sum_counter,
    target_row,
    window_value,
)
from collectors.workloads.base import Measurement, Workload

__all__ = ["PassiveWorkload"]

MAX_WINDOW_S = 3600.0
_COUNTER_NAME = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_STEP_S = 0.1  # granularity of waits (liveness checks during warm-up)
_UNITS = {
    "probe_requests": "count", "probe_errors": "count", "probe_error_rate": "ratio",
    "scrape_errors": "count", "error_rate": "ratio",
}


@dataclass
class _Window:
    """What one measurement window collected so far."""

    t0: float
    deadline: float
    notes: list[str] = field(default_factory=list)
    rows: list[dict[str, float]] = field(default_factory=list)
    index: list[float] = field(default_factory=list)
    gone: str | None = None


def _err(option: str, allowed: str, got: object) -> CollectorError:
    return CollectorError(f"PassiveWorkload: {option} must be {allowed}, got {got!r}")


def _check_seconds(option: str, value: object, low: float, high: float, *, low_open: bool = False) -> float:
    """``value`` as float if it is a finite number in the range. Raises: CollectorError naming the option."""
    if (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        and (low < value if low_open else low <= value) and value <= high
    ):
        return float(value)
    bracket = "(" if low_open else "["
    raise _err(option, f"a number of seconds in {bracket}{low:g}, {high:g}]", value)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%H:%M:%SZ")


class PassiveWorkload(Workload):
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
        policy: what may be a target and which hosts besides loopback a URL may name (default: the
            strict policy, no target allowed, loopback only).

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
        policy: PassivePolicy | None = None,
    ) -> None:
        self.policy = policy if policy is not None else PassivePolicy()
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
                check_url(url, allowed_hosts=self.policy.probe_hosts, what=f"PassiveWorkload: {option}")
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
        self.pid_list: list[int] | None = list(pids) if pids is not None else None
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
        self._active: Prober | None = None
        self._stopped = False

    # ------------------------------------------------------------ protocol
    def metric_names(self) -> tuple[str, ...]:
        """Every metric :meth:`measure` reports with this configuration (all of them, NaN where unavailable)."""
        names: list[str] = []
        if self.pid_list is not None:
            names += [v[0] for v in PID_COLUMNS.values()]
        elif self.cgroup is not None:
            names += [v[0] for v in CGROUP_COLUMNS.values()]
        if self.probe_url is not None:
            names += PROBE_METRICS
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
            TargetRefused: the target is not allowed (see :meth:`check_target`).
        """
        del preexec_fn
        self._stopped = False
        self._resolve()
        if self.probe_url is not None:
            try:  # any status is an answer: reachable (a bad status counts as an error in measure)
                fetch(self.probe_url, timeout_s=self.probe_timeout_s, allowed_hosts=self.policy.probe_hosts)
            except CollectorError as err:
                raise WorkloadError(f"passive: probe_url is not reachable: {err}") from None
        if self.scrape_url is not None:
            try:
                scrape(self.scrape_url, timeout_s=self.scrape_timeout_s, allowed_hosts=self.policy.probe_hosts)
            except CollectorError as err:
                raise WorkloadError(f"passive: scrape_url: {err}") from err
        return self.pids()

    def check_target(self) -> None:
        """Check the target against :attr:`policy` now (what is not running is left to :meth:`start`).

        Raises:
            TargetRefused: naming the target, the rule it breaks and how to allow a target.
        """
        if self.pid_list is not None:
            self.policy.check_pids(self.pid_list)
        elif (path := self._cgroup_path()) is not None:
            self.policy.check_cgroup(path)

    def pids(self) -> list[int]:
        """The given pids still alive plus their descendants, or the cgroup's member processes; [] if gone.

        This is what knobs act on, so it is checked against :attr:`policy` on every call.

        Raises:
            TargetRefused: the target (or a process in it now) is refused.
        """
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
            self.policy.check_pids(self.pid_list, list(out))
            return sorted(out)
        path = self._cgroup_path()
        if path is None:
            return []
        for name in ("cgroup.procs", "tasks"):
            try:
                text = (path / name).read_text(encoding="ascii")
            except OSError:
                continue
            self.policy.check_cgroup(path)
            return sorted({int(x) for x in text.split() if x.isdigit()})
        return []

    def _cgroup_path(self) -> Path | None:
        """The cgroup directory (as resolved at start, else now); None without a cgroup or when it is not there."""
        if self._target is not None:
            return self._target.cgroup
        if self.cgroup is None:
            return None
        try:
            return parse_target(self.cgroup).cgroup
        except CollectorError:
            return None

    def measure(self, *, warmup_s: float, measure_s: float) -> Measurement:
        """Wait ``warmup_s`` (no load is driven), then observe the target for ``measure_s``.

        Raises:
            ValueError: a duration outside [0, 3600] s (warm-up) / (0, 3600] s (window).
            WorkloadError: a target pid or the cgroup is missing or vanished (the
                message says what and when; the window ended early).
        """
        _check_window(warmup_s, measure_s)
        self._stopped = False
        has_target = self.pid_list is not None or self.cgroup is not None
        if has_target:
            self._check_before_warmup()
        self._warm_up(warmup_s, has_target)
        notes: list[str] = []
        sampler = self._sampler(notes) if has_target else None
        before = self._scrape(notes, "start") if self.scrape_url else None
        t0 = time.monotonic()
        win = _Window(t0=t0, deadline=t0 + measure_s, notes=notes)
        prober = self._start_prober(win) if self.probe_url is not None else None
        try:
            if sampler is not None:
                self._sample_window(sampler, win, measure_s)
            else:
                self._idle_until(win.deadline)
        finally:
            if prober is not None:
                prober.stop_event.set()
                prober.join(self.probe_timeout_s + 2.0)
                self._active = None
        if win.gone is not None:
            t_s = time.monotonic() - t0
            raise WorkloadError(f"passive: {win.gone} {t_s:.1f} s into the {measure_s:g} s window "
                                f"(at {_utc_now()}); window ended early after {len(win.rows)} sample(s)")
        after = self._scrape(notes, "end") if self.scrape_url else None
        return self._measurement(win, sampler, prober, before, after)

    def stop(self) -> None:
        """Nothing was started, so nothing is stopped; ends an in-flight probe early. Idempotent."""
        self._stopped = True
        if self._active is not None:
            self._active.stop_event.set()


    # ------------------------------------------------------------ the window, step by step
    def _check_before_warmup(self) -> None:
        """Resolve the target on the first window; later ones check it is still there. Raises: WorkloadError."""
        if not self._created and self._target is None:
            self._resolve()
        elif gone := self._vanished():
            raise WorkloadError(f"passive: {gone} before the warm-up started (at {_utc_now()}); "
                                "nothing was measured")

    def _warm_up(self, warmup_s: float, has_target: bool) -> None:
        """No load, only watch the target for ``warmup_s``. Raises: WorkloadError if it vanishes."""
        t_w = time.monotonic()
        end_w = t_w + warmup_s
        while (now := time.monotonic()) < end_w and not self._stopped:
            gone = self._vanished() if has_target else None
            if gone:
                raise WorkloadError(f"passive: {gone} {now - t_w:.1f} s into the {warmup_s:g} s warm-up "
                                    f"(at {_utc_now()}); nothing was measured")
            time.sleep(min(_STEP_S, end_w - now))

    def _start_prober(self, win: _Window) -> Prober:
        """The probe thread for this window, started (and remembered so that :meth:`stop` can end it)."""
        assert self.probe_url is not None
        prober = Prober(self.probe_url, interval_s=self.probe_interval_s, timeout_s=self.probe_timeout_s,
                        deadline=win.deadline, t0=win.t0, allowed_hosts=self.policy.probe_hosts)
        self._active = prober
        prober.start()
        return prober

    def _idle_until(self, deadline: float) -> None:
        """Wait until ``deadline`` (or :meth:`stop`): nothing to sample, the probe/scrape measure."""
        while (now := time.monotonic()) < deadline and not self._stopped:
            time.sleep(min(_STEP_S, deadline - now))

    def _sample_window(self, sampler: MetricsSampler, win: _Window, measure_s: float) -> None:
        """Sample every ``sample_interval_s`` into ``win.rows``; a vanished target sets ``win.gone`` and ends it."""
        next_t = win.t0
        for _ in range(int(measure_s / self.sample_interval_s) + 3):
            now = time.monotonic()
            if now < next_t:
                time.sleep(next_t - now)
            t_s = time.monotonic() - win.t0
            win.gone = self._vanished()
            if win.gone:
                return
            try:
                row = target_row(sampler.sample(), self._columns())
            except (CollectorError, OSError, ValueError) as err:  # a file vanishing while read
                win.gone = self._vanished() or f"the target could not be read ({type(err).__name__}: {err})"
                return
            win.gone = self._vanished(sampler)  # also catches a removal during the read
            if win.gone:
                return
            win.rows.append(row)
            win.index.append(round(t_s, 3))
            if t_s >= measure_s - 1e-3 or self._stopped:
                return
            next_t += self.sample_interval_s
            if win.deadline - next_t < self.sample_interval_s / 2:
                next_t = win.deadline  # no sliver of an interval at the end

    def _target_metrics(
        self, win: _Window, sampler: MetricsSampler | None, metrics: dict[str, float], units: dict[str, str],
    ) -> pd.DataFrame:
        """Reduce the sampled rows into ``metrics``/``units``; the timeline; unavailable columns noted."""
        columns = self._columns()
        names = [v[0] for v in columns.values()]
        index = win.index
        timeline = pd.DataFrame(win.rows, index=pd.Index(index, name="t_s", dtype=float), columns=names, dtype=float)
        weights = np.diff(np.asarray(index, dtype=float), prepend=index[0] if index else 0.0)
        for name, unit, _ in columns.values():
            metrics[name] = window_value(timeline[name].to_numpy(dtype=float), weights, gauge=name in GAUGES)
            units[name] = unit
        if sampler is not None:
            for key, reason in sorted(sampler.gaps.items()):
                if key.startswith("target."):
                    win.notes.append(f"unavailable: {key}: {reason}")
        missing = [n for n in names if math.isnan(metrics[n]) and not any(n in note for note in win.notes)]
        if missing and len(win.rows) > 1:
            where = f"cgroup {self._target.cgroup}" if self._target is not None else "these pids"
            hint = (" (cgroup v1 CPU usage needs cpuacct.usage, in the cpu directory or at the same path "
                    "under /sys/fs/cgroup/cpuacct)") if "target_cpu_pct" in missing and self._target else ""
            win.notes.append(f"no value for {', '.join(missing)}: not available for {where}{hint}")
        return timeline

    def _measurement(
        self, win: _Window, sampler: MetricsSampler | None, prober: Prober | None,
        before: Scraped | None, after: Scraped | None,
    ) -> Measurement:
        """The window's :class:`Measurement`: every declared metric (NaN where unavailable), units, notes."""
        metrics: dict[str, float] = {}
        units = dict(_UNITS)
        timeline = None
        if self.pid_list is not None or self.cgroup is not None:
            timeline = self._target_metrics(win, sampler, metrics, units)
        if prober is not None:
            metrics.update(probe_metrics(prober, win.notes))
        if self.scrape_url is not None:
            assert self.throughput_counter is not None
            metrics.update(scrape_metrics(before, after, self.throughput_counter, self.error_counter, win.notes))
            units["throughput"] = f"{self.throughput_counter}/s"
        if self.probe_url is not None and self.error_counter is None:
            metrics["error_rate"] = metrics["probe_error_rate"]
        metrics = {k: metrics.get(k, math.nan) for k in self.metric_names()}
        units = {k: v for k, v in units.items() if k in metrics}
        return Measurement(metrics=metrics, units=units, timeline=timeline, notes=tuple(dict.fromkeys(win.notes)))

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
        """Check that pids/cgroup exist now and are allowed, and remember their identity.

        Raises:
            WorkloadError: not running, or no such cgroup. TargetRefused: not allowed.
        """
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
            self.policy.check_pids(self.pid_list)
        elif self.cgroup is not None:
            try:
                target = parse_target(self.cgroup)
            except CollectorError as err:
                raise WorkloadError(f"passive: cgroup {self.cgroup!r} does not exist: {err}") from err
            if target.cgroup is not None:
                self.policy.check_cgroup(target.cgroup)
            self._target = target

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

    def _columns(self) -> dict[str, tuple[str, str, float]]:
        """The target columns this configuration keeps (pids or cgroup)."""
        return PID_COLUMNS if self.pid_list is not None else CGROUP_COLUMNS

    def _scrape(self, notes: list[str], when: str) -> Scraped | None:
        """The wanted counters now (a missing counter counts as 0, with a note); None if the scrape failed."""
        assert self.scrape_url is not None and self.throughput_counter is not None
        wanted = [self.throughput_counter] + ([self.error_counter] if self.error_counter else [])
        t_a = time.monotonic()
        try:
            values = scrape(self.scrape_url, timeout_s=self.scrape_timeout_s, allowed_hosts=self.policy.probe_hosts)
        except CollectorError as err:
            notes.append(f"scrape at the {when} of the window failed: {err}")
            return None
        t = (t_a + time.monotonic()) / 2.0
        out: dict[str, float] = {}
        for name in wanted:
            total, found = sum_counter(values, name)
            if found:
                out[name] = total
            else:
                known = sorted({k.partition("{")[0] for k in values if k.partition("{")[0].endswith("_total")})
                notes.append(f"counter {name} not in the exposition at the {when} of the window "
                             f"(counted as 0); counters there: {', '.join(known[:10]) or 'none'}")
                out[name] = 0.0
        return t, out


def _check_window(warmup_s: float, measure_s: float) -> None:
    """Raises: ValueError: a duration outside [0, 3600] s (warm-up) / (0, 3600] s (window)."""
    for name, value, low_open in (("warmup_s", warmup_s, False), ("measure_s", measure_s, True)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not ((value > 0) if low_open else (value >= 0)) or value > MAX_WINDOW_S:
            raise ValueError(f"{name} must be in {'(' if low_open else '['}0, {MAX_WINDOW_S:g}] s, got {value!r}")
