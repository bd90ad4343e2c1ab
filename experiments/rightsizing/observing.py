"""What ``novatune serve`` observes: the setting ``observe_targets``, sampled into the usage store in a thread.

:class:`ObservingService` is made with the app (no I/O then), started from the FastAPI lifespan and stopped at
shutdown. :meth:`~ObservingService.start` resolves each target of ``observe_targets`` and checks it with the
allowed-target policy (``allowed_targets``): a target that is refused or malformed is logged and listed in
:meth:`~ObservingService.status` under ``refused`` with the reason -- never fatal, the service and the other targets
go on. One that does not exist yet (a service started after novatune) is listed under ``missing`` and looked for
again every :data:`RETRY_S` seconds, as is one that vanished (``gone``: a restarted service gets its cgroup back).
The targets run in one :class:`collectors.usage.observe.Observer` thread every ``observe_interval_s`` seconds
(downsampling and pruning hourly, with ``usage_retention_days``). A store that cannot be opened is logged and
reported under ``error``.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from collectors.errors import NovatuneError
from collectors.passive.allowed import PassivePolicy
from collectors.usage.errors import TargetNotFound
from collectors.usage.history import UsageStore
from collectors.usage.observe import Observer
from collectors.usage.target import ResolvedTarget, resolve_target
from experiments.settings import Paths, Settings

__all__ = ["RETRY_S", "ObservingService"]

log = logging.getLogger(__name__)
#: seconds between two looks for targets that are missing or vanished
RETRY_S = 60.0


class ObservingService:
    """The service's background observation of ``settings.observe_targets`` into ``paths.usage_db``.

    Args:
        paths: the data directory.
        settings: the service's settings.
        root: where ``/proc`` and ``/sys`` are (tests).
    """

    def __init__(self, paths: Paths, settings: Settings, *, root: str | Path = "/") -> None:
        self.paths = paths
        self.settings = settings
        self.root = root
        self.refused: dict[str, str] = {}
        self.missing: dict[str, str] = {}
        self.error: str | None = None
        self.retry_s = RETRY_S
        self._policy: PassivePolicy | None = None
        self._last_retry = 0.0
        self._stop = threading.Event()
        self._observer: Observer | None = None
        self._thread: threading.Thread | None = None

    def _resolve_one(self, spec: str) -> ResolvedTarget | None:
        assert self._policy is not None
        try:
            found = resolve_target(spec, policy=self._policy, root=self.root)
        except TargetNotFound as err:
            if spec not in self.missing:
                log.warning("observe: %s not there (looked for again every %g s): %s", spec, self.retry_s, err)
            self.missing[spec] = str(err)
            return None
        except NovatuneError as err:
            self.refused[spec] = str(err)
            self.missing.pop(spec, None)
            log.warning("observe: %s not observed: %s", spec, err)
            return None
        self.missing.pop(spec, None)
        return found

    def _retry(self) -> None:
        """Every ``retry_s``: look again for missing targets and for those that vanished."""
        now = time.monotonic()
        if self._observer is None or now - self._last_retry < self.retry_s:
            return
        self._last_retry = now
        for spec in [*self.missing, *self._observer.gone]:
            found = self._resolve_one(spec)
            if found is not None and self._observer.add(found):
                log.info("observe: %s observed (again)", spec)

    def start(self) -> None:
        """Resolve and check the targets, start the observer thread (nothing when no target is left)."""
        if self._thread is not None or not self.settings.observe_targets:
            return
        try:
            self._policy = PassivePolicy.of(self.settings.allowed_targets, self.settings.allowed_probe_hosts)
        except ValueError as err:
            self.error = f"allowed_targets: {err}"
            log.warning("observe: %s; nothing observed", self.error)
            return
        targets = [t for t in map(self._resolve_one, dict.fromkeys(self.settings.observe_targets)) if t is not None]
        if not targets and not self.missing:
            return
        self._last_retry = time.monotonic()
        try:
            store = UsageStore(self.paths.usage_db, retention_days=self.settings.usage_retention_days)
            self._observer = Observer(targets, store, interval_s=self.settings.observe_interval_s, stop=self._stop,
                                      root=str(self.root), persistent=True, on_tick=self._retry)
        except NovatuneError as err:
            self.error = str(err)
            log.warning("observe: %s; nothing observed", err)
            return
        self._thread = threading.Thread(target=self._run, name="novatune-observe", daemon=True)
        self._thread.start()
        log.info("observe: %s every %g s", ", ".join(t.name for t in targets) or "nothing yet",
                 self.settings.observe_interval_s)

    def _run(self) -> None:
        assert self._observer is not None
        try:
            self._observer.run()
        except Exception:  # the thread must not die silently: status() says so
            log.exception("observe: the observer failed")
            self.error = "the observer failed; see the service log"

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """End the observer thread (waits up to ``timeout_s``)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def status(self) -> dict[str, Any]:
        """``targets`` (the setting), ``observing``, ``refused``, ``missing`` and ``gone`` (target -> why),
        ``stored`` (samples per target since start), ``running``, ``interval_s``, ``errors`` (the store's) and
        ``error``."""
        obs = self._observer.status() if self._observer is not None else {}
        return {
            "targets": list(self.settings.observe_targets),
            "interval_s": self.settings.observe_interval_s,
            "running": self._thread is not None and self._thread.is_alive(),
            "observing": obs.get("observing", []),
            "refused": dict(self.refused),
            "missing": dict(self.missing),
            "gone": obs.get("gone", {}),
            "stored": obs.get("stored", {}),
            "errors": obs.get("errors", []),
            "error": self.error,
        }
