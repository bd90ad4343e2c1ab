"""The tuner's steps: validated applies, and the undoing of kept ones; each one recorded with the spec's
knobs' live values before and after it.

A kept step is an application (the validated apply makes it one, through
:func:`experiments.deploy.apply.apply_config`), so ``novatune rollback ID`` and
``POST /tuning/rollback/{id}`` undo it like any other. Steps never stack on the same knob: a new step that
changes a knob an earlier kept step of this tuner holds supersedes it (the earlier application is rolled
back first and its other values are carried into the new step); when the new step is not kept, the
earlier values are applied again (a ``reapply`` step), so the tuner always ends where it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from collectors.errors import NovatuneError
from experiments.autotune.model import StepRecord
from experiments.autotune.store import TunerStore
from experiments.settings import Paths
from experiments.validate.model import ValidationReport, ValidationRequest

__all__ = ["Steps", "snapshot"]


def snapshot(knobs: list[str]) -> dict[str, Any]:
    """The live values of the host-scoped ``knobs`` (a knob bound to a run's workload, or unreadable: None)."""
    from experiments.deploy.applications import default_catalog

    try:
        cat = default_catalog(protect=False)
    except NovatuneError:
        return {}
    out: dict[str, Any] = {}
    for name in knobs:
        try:
            v = cat.get(name).read()
        except (NovatuneError, OSError, ValueError):
            v = None
        out[name] = list(v) if isinstance(v, tuple) else v
    return out


class Steps:
    """The steps of one tuner (read from and appended to its store)."""

    def __init__(self, paths: Paths, store: TunerStore) -> None:
        self.paths = paths
        self.store = store

    def _next_id(self) -> str:
        return f"{self.store.id}-s{len(self.store.steps()) + 1}"

    def kept(self) -> list[dict[str, Any]]:
        """Steps whose change stays (kept applies and re-applies not undone since), oldest first."""
        steps = self.store.steps()
        undone = {s.get("undoes") for s in steps if s.get("kind") == "rollback"}
        return [s for s in steps if s.get("kind") in ("apply", "reapply") and s.get("decision") == "kept"
                and s.get("application") and s["id"] not in undone]

    def kept_ids(self) -> list[str]:
        return [s["id"] for s in self.kept()]

    def _record(self, step: StepRecord) -> StepRecord:
        self.store.append(step.as_dict())
        return step

    def undo(self, kept: dict[str, Any], cycle: int, *, reason: str, knobs: list[str]) -> StepRecord:
        """Roll back the application of the kept step ``kept``; the step recording it."""
        from experiments.deploy.rollback import rollback

        before = snapshot(knobs)
        try:
            rb = rollback(kept["application"], paths=self.paths)
            decision, why, report = "rolled_back", reason, rb.as_dict()
        except NovatuneError as err:
            decision, why, report = "failed", f"{reason}; the rollback failed: {err}", {}
        return self._record(StepRecord(id=self._next_id(), tuner=self.store.id, cycle=cycle, kind="rollback",
                                       time=time.time(), values=dict(kept.get("values") or {}), decision=decision,
                                       reason=why, before=before, after=snapshot(knobs),
                                       application=kept["application"], report=report, undoes=kept["id"]))

    def roll_back_last(self, cycle: int, *, reason: str, knobs: list[str]) -> StepRecord | None:
        """Undo the newest kept step (performance fell since it); None when there is none."""
        kept = self.kept()
        return self.undo(kept[-1], cycle, reason=reason, knobs=knobs) if kept else None

    def validated(self, cycle: int, values: dict[str, Any], *, validate: Callable[[ValidationRequest],
                  ValidationReport], spec_path: str, window_s: float, guards: tuple[tuple[str, float], ...],
                  knobs: list[str]) -> StepRecord:
        """Validated apply of ``values`` (superseding earlier kept steps on the same knobs); the step."""
        superseded = [s for s in self.kept() if set(s.get("values") or {}) & set(values)]
        carried: dict[str, Any] = {}
        for s in superseded:
            carried.update(s.get("values") or {})
            self.undo(s, cycle, reason=f"superseded by the next step of cycle {cycle}", knobs=knobs)
        full = {**carried, **values}
        before = snapshot(knobs)
        req = ValidationRequest(values=full, source=f"autotune {self.store.id} cycle {cycle}", spec_path=spec_path,
                                window_s=window_s, guards=guards)
        sid = self._next_id()
        try:
            rep = validate(req)
            decision, reason, app, report = rep.decision, rep.reason, rep.application, rep.as_dict()
        except NovatuneError as err:
            decision, reason, app, report = "failed", f"{type(err).__name__}: {err}", None, {}
        step = self._record(StepRecord(id=sid, tuner=self.store.id, cycle=cycle, kind="apply", time=time.time(),
                                       values=full, decision=decision, reason=reason, before=before,
                                       after=snapshot(knobs), application=app, report=report))
        if decision != "kept" and carried:
            self._reapply(cycle, carried, knobs)
        return step

    def _reapply(self, cycle: int, values: dict[str, Any], knobs: list[str]) -> StepRecord:
        """Put back the values of superseded steps (they were validated before) as a new application."""
        from experiments.deploy.apply import apply_config

        before = snapshot(knobs)
        app_id: str | None
        try:
            app = apply_config(values, paths=self.paths, source=f"autotune {self.store.id} cycle {cycle} (re-apply)")
            decision, reason, app_id = "kept", "the superseding step was not kept: earlier values applied again", app.id
            if app.state == "unchanged":
                app_id = None
        except NovatuneError as err:
            decision, reason, app_id = "failed", f"re-applying the earlier values failed: {err}", None
        return self._record(StepRecord(id=self._next_id(), tuner=self.store.id, cycle=cycle, kind="reapply",
                                       time=time.time(), values=values, decision=decision, reason=reason,
                                       before=before, after=snapshot(knobs), application=app_id))
