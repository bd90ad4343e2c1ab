"""The continuous tuners as the service and the CLI see them: summaries, histories, the undoing of a step,
and the background tuners the service runs (``POST /tuning/continuous``), one thread each, stopped at
shutdown (a validation in progress restores its change; kept steps stay, as applications).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from collectors.errors import NovatuneError
from experiments.autotune.model import FINAL, AutotuneConflict, AutotuneNotFound, AutotuneOptions
from experiments.autotune.store import TunerStore, find_step, list_tuners
from experiments.settings import Paths, Settings
from experiments.spec import StudySpec

__all__ = ["ContinuousTuners", "history", "rollback_by_id", "rollback_step", "summaries"]

log = logging.getLogger(__name__)


def _summary(meta: dict[str, Any]) -> dict[str, Any]:
    return {"id": meta.get("id"), "state": meta.get("state"), "cycle": meta.get("cycle", 0),
            "converged": bool(meta.get("converged")), "quiet_cycles": meta.get("quiet_cycles", 0),
            "trust_scale": meta.get("trust_scale", 1.0), "current": meta.get("current") or {},
            "knobs": meta.get("knobs") or [], "spec": (meta.get("spec") or {}).get("name"),
            "kept_steps": meta.get("kept_steps") or [], "started": meta.get("started"),
            "updated": meta.get("updated"), "reason": meta.get("reason")}


def summaries(paths: Paths) -> list[dict[str, Any]]:
    """One summary per tuner (newest first): state, cycle, convergence, current configuration, kept steps."""
    return [_summary(m) for m in list_tuners(paths)]


def history(paths: Paths, tuner_id: str | None = None) -> dict[str, Any]:
    """A tuner's summary with its ``cycles`` and ``steps`` (``None``: the newest tuner).

    Raises:
        AutotuneNotFound: no tuner of that id (or none at all).
    """
    if tuner_id is None:
        metas = list_tuners(paths)
        if not metas:
            raise AutotuneNotFound("no continuous tuner yet; start one with `novatune autotune run SPEC`")
        tuner_id = str(metas[0]["id"])
    store = TunerStore(paths, tuner_id)
    meta = next((m for m in list_tuners(paths) if m.get("id") == tuner_id), store.meta())
    return {**_summary(meta), "objectives": meta.get("objectives") or {}, "options": meta.get("options") or {},
            "cycles": store.cycles(), "steps": store.steps()}


def all_steps(paths: Paths, *, limit: int = 100) -> list[dict[str, Any]]:
    """Every tuner's steps, newest first."""
    out: list[dict[str, Any]] = []
    for meta in list_tuners(paths):
        try:
            out.extend(TunerStore(paths, str(meta["id"])).steps())
        except AutotuneNotFound:
            continue
    return sorted(out, key=lambda s: s.get("time", 0), reverse=True)[:limit]


def rollback_step(paths: Paths, step_id: str, *, force: bool = False) -> dict[str, Any] | None:
    """Undo the tuner step ``step_id`` (roll back its application, record it in the tuner's history):
    ``{"step": the rollback step (dict), "rollback": the Rollback}``; None when ``step_id`` is not a step
    id (the caller treats it as an application id).

    Raises:
        AutotuneConflict: the step changed nothing that stays (not kept, or already undone).
        ApplicationNotFound / ApplyConflict / ApplyError: see :func:`experiments.deploy.rollback.rollback`.
    """
    from experiments.autotune.steps import Steps
    from experiments.deploy.rollback import rollback

    step = find_step(paths, step_id)
    if step is None:
        return None
    store = TunerStore(paths, str(step["tuner"]))
    steps = Steps(paths, store)
    if step_id not in steps.kept_ids():
        raise AutotuneConflict(f"step {step_id} has nothing to undo ({step.get('kind')}: {step.get('decision')}); "
                               f"kept steps: {', '.join(steps.kept_ids()) or 'none'}")
    rb = rollback(str(step["application"]), paths=paths, force=force)
    from experiments.autotune.model import StepRecord

    rec = StepRecord(id=f"{store.id}-s{len(store.steps()) + 1}", tuner=store.id, cycle=int(step.get("cycle", 0)),
                     kind="rollback", time=time.time(), values=dict(step.get("values") or {}), decision="rolled_back",
                     reason="rolled back by request", application=str(step["application"]), report=rb.as_dict(),
                     undoes=step_id)
    store.append(rec.as_dict())
    return {"step": rec.as_dict(), "rollback": rb}


def rollback_by_id(paths: Paths, rollback_id: str, *, force: bool = False) -> dict[str, Any]:
    """Roll back a continuous tuner's step (:func:`rollback_step`) or, when ``rollback_id`` is no step's id, the
    application of that id: what ``POST /tuning/rollback/{id}`` answers (a step's rollback with ``step``).

    Raises:
        AutotuneConflict, ApplicationNotFound, ApplyConflict, ApplyError: as :func:`rollback_step` and
            :func:`experiments.deploy.rollback.rollback`.
    """
    from experiments.deploy.rollback import rollback

    step = rollback_step(paths, rollback_id, force=force)
    if step is not None:
        return dict(step["rollback"].as_dict()) | {"step": step["step"]}
    return rollback(rollback_id, paths=paths, force=force).as_dict()


class ContinuousTuners:
    """The service's background tuners, by id (one thread each)."""

    def __init__(self, paths: Paths, settings: Settings, *, validate: Any = None) -> None:
        self.paths = paths
        self.settings = settings
        #: the validated apply the tuners use (None: the engine; a test double in tests)
        self.validate = validate
        self._tuners: dict[str, Any] = {}
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def _busy_knobs(self) -> dict[str, str]:
        """knob -> id of a live tuner (this service's or another process's) tuning it."""
        busy = {}
        for meta in list_tuners(self.paths):
            if meta.get("state") not in FINAL:
                for k in meta.get("knobs") or []:
                    busy[k] = str(meta.get("id"))
        return busy

    def start(self, spec: StudySpec, options: AutotuneOptions, *, source: str = "POST /tuning/continuous") -> str:
        """Check ``spec`` and ``options`` here, then tune in a new thread; returns the tuner id.

        Raises:
            AutotuneError: bad options. SpecError: the spec does not fit this machine.
            AutotuneConflict: a live tuner already tunes one of the spec's knobs.
        """
        from experiments.autotune.loop import Autotuner

        options.check()
        with self._lock:
            busy = self._busy_knobs()
            clash = sorted(k for k in spec.knobs if k in busy)
            if clash:
                raise AutotuneConflict(f"continuous tuner {busy[clash[0]]} already tunes {', '.join(clash)}; stop it "
                                       f"first (DELETE /tuning/continuous/{busy[clash[0]]})")
            tuner = Autotuner(spec, paths=self.paths, options=options, source=source, settings=self.settings,
                              validate=self.validate)
            tuner.validator()  # AutotuneError (422) when no validated apply is installed
            t = threading.Thread(target=self._run, args=(tuner,), name=f"novatune-autotune-{tuner.id}", daemon=True)
            self._tuners[tuner.id] = tuner
            self._threads[tuner.id] = t
        t.start()
        return tuner.id

    def _run(self, tuner: Any) -> None:
        try:
            tuner.run()
        except NovatuneError as err:
            tuner.store.update(state="failed", reason=str(err))
            log.warning("continuous tuner %s failed: %s", tuner.id, err)
        except Exception as err:  # a tuner thread must log, never die silently
            tuner.store.update(state="failed", reason=f"{type(err).__name__}: {err}")
            log.exception("continuous tuner %s failed", tuner.id)

    def stop(self, tuner_id: str, *, wait_s: float = 0.0) -> dict[str, Any]:
        """Ask tuner ``tuner_id`` to stop; its summary. Raises AutotuneNotFound (unknown id)."""
        store = TunerStore(self.paths, tuner_id)  # AutotuneNotFound
        with self._lock:
            tuner, thread = self._tuners.get(tuner_id), self._threads.get(tuner_id)
        if tuner is not None:
            tuner.stop()
            if thread is not None and wait_s > 0:
                thread.join(timeout=wait_s)
        meta = store.meta()
        if tuner is None and meta.get("state") not in FINAL:
            raise AutotuneConflict(f"continuous tuner {tuner_id} runs in another process (pid {meta.get('pid')}); "
                                   "stop it there (Ctrl-C or SIGTERM)")
        stopping = thread is not None and thread.is_alive()
        return _summary(meta) | ({"state": "stopping"} if stopping else {})

    def running(self) -> list[str]:
        with self._lock:
            return [k for k, t in self._threads.items() if t.is_alive()]

    def shutdown(self, timeout_s: float = 120.0) -> None:
        """Stop every tuner and wait for them (a validation in progress restores its change)."""
        with self._lock:
            tuners, threads = list(self._tuners.values()), list(self._threads.values())
        for tuner in tuners:
            tuner.stop()
        deadline = time.monotonic() + timeout_s
        for t in threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
