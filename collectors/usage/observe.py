"""The long-running collector: sample every target each interval, store the batch, age the store hourly.

:class:`Observer` is what ``novatune observe`` runs in the foreground and ``novatune serve`` in a thread. Each
interval it takes one :meth:`~collectors.usage.sampler.UsageSampler.sample` of every target still there (one read
of each file per target: its CPU cost is bounded by the number of targets, not by the history) and writes them
with :meth:`~collectors.usage.history.UsageStore.add_batch`, one transaction per interval, over one connection held
for the run (``benchmarks/usage_observe.py`` measures the cost). Every ``maintenance_s`` (an
hour) and at start it runs :meth:`~collectors.usage.history.UsageStore.downsample` and
:meth:`~collectors.usage.history.UsageStore.prune`.

A target that vanishes (its cgroup removed, its process exited) is dropped from the rotation, logged once and
recorded in :attr:`Observer.gone`; the others go on. When no target is left the loop ends. A store that cannot be
written (locked past its timeout, a full disk) is logged and recorded in :attr:`Observer.errors` (at most the last
20); that interval's samples are lost, the loop goes on. ``stop`` ends the loop at once (between two reads).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.errors import NovatuneError
from collectors.rootfs import RootReader
from collectors.usage.errors import TargetVanished, UsageError
from collectors.usage.history import UsageStore
from collectors.usage.sampler import UsageSample, UsageSampler
from collectors.usage.target import ResolvedTarget

__all__ = ["MAX_ERRORS", "ObserveSummary", "Observer"]

log = logging.getLogger(__name__)
MAX_ERRORS = 20


@dataclass
class ObserveSummary:
    """What a run stored: samples per target, targets that vanished (name -> why), errors, the wall time."""

    started_s: float
    ended_s: float = 0.0
    stored: dict[str, int] = field(default_factory=dict)
    gone: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    intervals: int = 0

    @property
    def samples(self) -> int:
        return sum(self.stored.values())

    def to_dict(self) -> dict[str, Any]:
        return {"started_s": self.started_s, "ended_s": self.ended_s, "intervals": self.intervals,
                "samples": self.samples, "stored": dict(self.stored), "gone": dict(self.gone),
                "errors": list(self.errors)}


class Observer:
    """Observe ``targets`` into ``store`` every ``interval_s`` seconds until ``stop`` is set.

    Args:
        targets: resolved (and policy-checked) targets.
        store: where samples go.
        interval_s: seconds between two samples of a target (> 0).
        stop: set it to end :meth:`run`.
        root: the root the targets were resolved under.
        maintenance_s: seconds between two downsample/prune passes (the first at start).
        on_sample: called with each target's sample after it is stored (the CLI prints them).
        persistent: keep running with no target left (``novatune serve``: targets come back through :meth:`add`);
            then ``targets`` may be empty.
        on_tick: called after each interval (``novatune serve`` looks for missing targets again).

    Raises:
        UsageError: no target (unless ``persistent``), or ``interval_s`` not a positive number.
    """

    def __init__(self, targets: Sequence[ResolvedTarget], store: UsageStore, *, interval_s: float,
                 stop: threading.Event, root: RootReader | str = "/", maintenance_s: float = 3600.0,
                 on_sample: Callable[[str, UsageSample], None] | None = None, persistent: bool = False,
                 on_tick: Callable[[], None] | None = None) -> None:
        if not targets and not persistent:
            raise UsageError("nothing to observe: give at least one target")
        if not (isinstance(interval_s, (int, float)) and 0 < interval_s <= 86400):
            raise UsageError(f"interval must be a number of seconds in (0, 86400], got {interval_s!r}")
        self.store = store
        self.interval_s = float(interval_s)
        self.stop = stop
        self.maintenance_s = maintenance_s
        self.on_sample = on_sample
        self.persistent = persistent
        self.on_tick = on_tick
        self.root = root
        self.summary = ObserveSummary(started_s=time.time())
        self._samplers: dict[str, UsageSampler] = {}
        self._lock = threading.Lock()
        for t in targets:
            self.add(t)
        self._last_maintenance = -float("inf")

    def add(self, target: ResolvedTarget) -> bool:
        """Observe ``target`` from the next interval on (again, when it had vanished); False when it vanished
        already (recorded in :attr:`gone`)."""
        try:
            sampler = UsageSampler(target, root=self.root)
        except NovatuneError as err:
            self._vanished(target.name, err)
            return False
        with self._lock:
            self._samplers[target.name] = sampler
            self.summary.gone.pop(target.name, None)
        return True

    @property
    def gone(self) -> dict[str, str]:
        return self.summary.gone

    @property
    def errors(self) -> list[str]:
        return self.summary.errors

    def _vanished(self, name: str, err: Exception) -> None:
        log.warning("observe: %s: %s; no longer observed", name, err)
        with self._lock:
            self.summary.gone[name] = str(err)
            self._samplers.pop(name, None)

    def _error(self, what: str) -> None:
        log.warning("observe: %s", what)
        self.summary.errors.append(what)
        del self.summary.errors[:-MAX_ERRORS]

    def _maintain(self) -> None:
        now = time.time()
        if now - self._last_maintenance < self.maintenance_s:
            return
        self._last_maintenance = now
        try:
            self.store.downsample(now)
            self.store.prune(now)
        except NovatuneError as err:
            self._error(f"downsample/prune of {self.store.path} failed: {err}")

    def tick(self) -> int:
        """One interval: sample every target, store, maintain. Returns the samples stored."""
        with self._lock:
            samplers = list(self._samplers.items())
        batch: dict[str, list[UsageSample]] = {}
        for name, sampler in samplers:
            if self.stop.is_set():
                break
            try:
                batch[name] = [sampler.sample()]
            except TargetVanished as err:
                self._vanished(name, err)
        stored = 0
        try:
            stored = self.store.add_batch(batch)
        except NovatuneError as err:
            self._error(f"{len(batch)} sample(s) could not be stored: {err}")
            batch = {}
        with self._lock:
            for name in batch:
                self.summary.stored[name] = self.summary.stored.get(name, 0) + 1
        if self.on_sample is not None:
            for name, samples in batch.items():
                self.on_sample(name, samples[0])
        self.summary.intervals += 1
        self._maintain()
        if self.on_tick is not None:
            self.on_tick()
        return stored

    def status(self) -> dict[str, Any]:
        """The targets observed now, the samples stored per target, those gone and the last errors."""
        with self._lock:
            d = self.summary.to_dict()
            d["observing"] = sorted(self._samplers)
        d["interval_s"] = self.interval_s
        return d

    def run(self, *, duration_s: float | None = None) -> ObserveSummary:
        """Observe until ``stop`` is set, ``duration_s`` passed or no target is left (unless ``persistent``); the
        summary."""
        with self.store.held():
            self._maintain()
            start = time.monotonic()
            deadline = None if duration_s is None else start + duration_s
            n = 0
            while (self._samplers or self.persistent) and not self.stop.is_set():
                n += 1
                wake = start + n * self.interval_s
                if deadline is not None and wake > deadline + 1e-6:
                    break
                if self.stop.wait(max(0.0, wake - time.monotonic())):
                    break
                self.tick()
        self.summary.ended_s = time.time()
        return self.summary
