"""What ``novatune serve`` observes: the setting ``observe_targets``, sampled into the usage store in a thread.

:class:`ObservingService` is made with the app (no I/O then), started from the FastAPI lifespan and stopped at
shutdown. :meth:`~ObservingService.start` resolves each target of ``observe_targets`` and checks it with the
allowed-target policy (``allowed_targets``): a target that is refused, missing or malformed is logged and listed in
:meth:`~ObservingService.status` under ``refused`` with the reason -- never fatal, the service and the other targets
go on. The targets left run in one :class:`collectors.usage.observe.Observer` thread every ``observe_interval_s``
seconds (downsampling and pruning hourly, with ``usage_retention_days``); one that vanishes later is listed under
``gone``. A store that cannot be opened is logged and reported under ``error``.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from collectors.errors import NovatuneError
from collectors.passive.allowed import PassivePolicy
from collectors.usage.history import UsageStore
from collectors.usage.observe import Observer
from collectors.usage.target import ResolvedTarget, resolve_target
from experiments.settings import Paths, Settings

__all__ = ["ObservingService"]

log = logging.getLogger(__name__)


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
        self.error: str | None = None
        self._stop = threading.Event()
        self._observer: Observer | None = None
        self._thread: threading.Thread | None = None

    def _resolve(self) -> list[ResolvedTarget]:
        try:
            policy = PassivePolicy.of(self.settings.allowed_targets, self.settings.allowed_probe_hosts)
        except ValueError as err:
            self.error = f"allowed_targets: {err}"
            log.warning("observe: %s; nothing observed", self.error)
            return []
        found = []
        for spec in dict.fromkeys(self.settings.observe_targets):
            try:
                found.append(resolve_target(spec, policy=policy, root=self.root))
            except NovatuneError as err:
                self.refused[spec] = str(err)
                log.warning("observe: %s not observed: %s", spec, err)
        return found

    def start(self) -> None:
        """Resolve and check the targets, start the observer thread (nothing when no target is left)."""
        if self._thread is not None or not self.settings.observe_targets:
            return
        targets = self._resolve()
        if not targets:
            return
        try:
            store = UsageStore(self.paths.usage_db, retention_days=self.settings.usage_retention_days)
            self._observer = Observer(targets, store, interval_s=self.settings.observe_interval_s, stop=self._stop,
                                      root=str(self.root))
        except NovatuneError as err:
            self.error = str(err)
            log.warning("observe: %s; nothing observed", err)
            return
        self._thread = threading.Thread(target=self._run, name="novatune-observe", daemon=True)
        self._thread.start()
        log.info("observe: %s every %g s", ", ".join(t.name for t in targets), self.settings.observe_interval_s)

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
        """``targets`` (the setting), ``observing``, ``refused`` and ``gone`` (target -> why), ``stored`` (samples
        per target since start), ``running``, ``interval_s``, ``errors`` (the store's) and ``error``."""
        obs = self._observer.status() if self._observer is not None else {}
        return {
            "targets": list(self.settings.observe_targets),
            "interval_s": self.settings.observe_interval_s,
            "running": self._thread is not None and self._thread.is_alive(),
            "observing": obs.get("observing", []),
            "refused": dict(self.refused),
            "gone": obs.get("gone", {}),
            "stored": obs.get("stored", {}),
            "errors": obs.get("errors", []),
            "error": self.error,
        }
