"""Reading studies back from Optuna storage: listings, trial tables, the chosen point."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optimizer.pareto import ParetoInfo, pareto_info

__all__ = ["StudyNotFound", "StudyView", "list_studies", "load_view"]


class StudyNotFound(LookupError):
    """No study of that name in the storage."""


def _storage(url: str) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(url)


def list_studies(url: str) -> list[dict[str, Any]]:
    """One summary dict per study in the storage, oldest first."""
    out = []
    for s in optuna.get_all_study_summaries(_storage(url), include_best_trial=False):
        out.append(
            {
                "name": s.study_name,
                "trials": s.n_trials,
                "directions": [d.name.lower() for d in s.directions],
                "objectives": s.user_attrs.get("objectives", []),
                "state": s.user_attrs.get("state", "unknown"),
                "started": s.datetime_start.isoformat(timespec="seconds") if s.datetime_start else None,
            }
        )
    return out


def _feasible(t: FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())


@dataclass(frozen=True)
class StudyView:
    """A finished or running study as the CLI and exports see it."""

    name: str
    objectives: list[str]
    directions: list[str]
    attrs: dict[str, Any]
    trials: list[FrozenTrial]

    @property
    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE]

    def pareto(self) -> tuple[ParetoInfo, list[FrozenTrial]]:
        """Pareto info over COMPLETE trials (in trial order), and those trials."""
        done = self.complete
        vals = np.array([t.values for t in done], dtype=float).reshape(len(done), len(self.directions))
        info = pareto_info(vals, [_feasible(t) for t in done], self.directions)
        return info, done

    def knee_trial(self) -> FrozenTrial | None:
        info, done = self.pareto()
        return None if info.knee is None else done[info.knee]

    def front_trials(self) -> list[FrozenTrial]:
        info, done = self.pareto()
        return [done[i] for i in info.front]

    def trial(self, number: int) -> FrozenTrial:
        for t in self.trials:
            if t.number == number:
                return t
        raise LookupError(f"study {self.name!r} has no trial {number}; trials are 0..{len(self.trials) - 1}")

    def is_feasible(self, t: FrozenTrial) -> bool:
        return _feasible(t)

    def knob_values(self, t: FrozenTrial) -> dict[str, Any]:
        """What the trial applied: its ``applied`` user attribute (the sampler's proposal after
        ordering repair, see ``SearchSpace.repair``), else its params."""
        values = {**t.params, **(t.user_attrs.get("applied") or {})}
        return {k: values[k] for k in self.attrs.get("knobs", list(values)) if k in values}


def load_view(url: str, name: str) -> StudyView:
    """Load study ``name``. Raises :class:`StudyNotFound` listing the studies that exist."""
    storage = _storage(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)]
        raise StudyNotFound(
            f"no study named {name!r}; studies here: {', '.join(names) if names else '(none yet)'}"
        ) from None
    attrs = dict(study.user_attrs)
    return StudyView(
        name=name,
        objectives=list(attrs.get("objectives", [f"objective_{i}" for i in range(len(study.directions))])),
        directions=[d.name.lower() for d in study.directions],
        attrs=attrs,
        trials=study.get_trials(deepcopy=False),
    )
