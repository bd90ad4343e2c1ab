"""Reading studies back from Optuna storage: listings, trial tables, the chosen point."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from collectors.errors import NovatuneError
from optimizer.choose import Rule, choose
from optimizer.noise import (
    TrialEstimate,
    merge_duplicates,
    noisy_pareto_mask,
    pooled_noise,
    significantly_better,
)
from optimizer.pareto import ParetoInfo, pareto_info, versus_reference

__all__ = ["Configuration", "Decision", "StudyNotFound", "StudyView", "list_studies", "load_view"]


class StudyNotFound(NovatuneError, LookupError):
    """No study of that name in the storage (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


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


def _stale_reason(t: FrozenTrial) -> str | None:
    """Why a fleet trial failed without saying so: Optuna's heartbeat check failed it (its agent died)."""
    if t.state == TrialState.FAIL and t.user_attrs.get("host"):
        return f"no heartbeat from the agent of host {t.user_attrs['host']} within the grace period"
    return None


def _feasible(t: FrozenTrial) -> bool:
    return t.state == TrialState.COMPLETE and all(v <= 0 for v in t.constraints.values())


@dataclass(frozen=True)
class Configuration:
    """One applied configuration: its first trial, every trial that measured it, the pooled estimate."""

    trial: FrozenTrial
    members: list[FrozenTrial]
    estimate: TrialEstimate | None
    feasible: bool


@dataclass(frozen=True)
class Decision:
    """What :meth:`StudyView.decide` chose and why."""

    trial: FrozenTrial
    reason: str
    rule: str
    equivalent: list[int]  # front configurations not significantly different from the chosen one
    noisy_front: list[int]  # first trial of each configuration on the noise-aware front
    measured_by: list[int]  # every trial that measured the chosen configuration


def _nz(noise: np.ndarray, j: int) -> float | None:
    v = float(noise[j]) if j < len(noise) else math.nan
    return v if math.isfinite(v) else None


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

    # ------------------------------------------------ noise-aware decision
    def samples(self, t: FrozenTrial) -> list[list[float]]:
        """The trial's per-repeat objective values (its median values when none were stored)."""
        return [list(map(float, row)) for row in (t.user_attrs.get("samples") or [t.values])]

    def configurations(self) -> list[Configuration]:
        """Complete trials grouped by the configuration they applied (re-measurements and duplicates
        pooled), each with the median and confidence interval of its pooled measurements."""
        done = self.complete
        groups = merge_duplicates([self.knob_values(t) for t in done], [self.samples(t) for t in done])
        out = []
        for g in groups:
            members = [done[i] for i in g.indices]
            est = TrialEstimate.from_samples(g.samples) if len(g.samples) else None
            out.append(Configuration(members[0], members, est, all(_feasible(t) for t in members)))
        return out

    def decide(
        self,
        *,
        rule: str | None = None,
        budget: dict[str, float] | None = None,
        sla: dict[str, tuple[str, float]] | None = None,
        target: str | None = None,
    ) -> Decision:
        """The configuration to ship, by the study's ``choose`` rule (or the one given), judged on
        pooled medians; with the other front configurations that are not significantly different
        from it (inside each other's confidence intervals) and the noise-aware front. With the study's own
        rule, a justified study gives the trial its justification measured (:meth:`_justified`).

        Raises:
            ValueError: no configuration qualifies (the message names the closest one).
        """
        spec = (self.attrs.get("spec") or {}).get("choose") or {}
        own_rule = rule is None and budget is None and sla is None and target is None
        rule = rule or spec.get("rule") or "knee"
        budget = budget if budget is not None else spec.get("budget") or {}
        if sla is None:
            sla = {k: ("<=", v["max"]) if v.get("max") is not None else (">=", v["min"])
                   for k, v in (spec.get("sla") or {}).items()}
        target = target or spec.get("target")
        configs = [c for c in self.configurations() if c.estimate is not None and c.estimate.finite]
        if not configs:
            raise ValueError(f"study {self.name!r} has no complete trial to choose from")
        ests: list[TrialEstimate] = [c.estimate for c in configs if c.estimate is not None]
        values = np.array([e.values for e in ests], dtype=np.float64)
        feasible = [c.feasible for c in configs]
        metrics = [c.trial.user_attrs.get("metrics", {}) for c in configs]
        picked = choose(values, feasible, self.directions, self.objectives, rule=cast(Rule, rule), budget=budget,
                        sla=sla, metrics=metrics, target=target, trial_numbers=[c.trial.number for c in configs])
        noise = pooled_noise(ests)
        mask = noisy_pareto_mask(ests, self.directions, feasible=feasible, rel_noise=noise)
        chosen = configs[picked.index]
        best = ests[picked.index]
        equivalent = []
        for i, c in enumerate(configs):
            if i == picked.index or not mask[i]:
                continue
            better = any(significantly_better(ests[i], best, d, objective=j, rel_noise=_nz(noise, j))
                         or significantly_better(best, ests[i], d, objective=j, rel_noise=_nz(noise, j))
                         for j, d in enumerate(self.directions))
            if not better:
                equivalent.append(c.trial.number)
        front = [c.trial.number for c, m in zip(configs, mask) if m]
        decision = Decision(chosen.trial, picked.reason, rule, equivalent, front, [t.number for t in chosen.members])
        return self._justified(decision) if own_rule else decision

    def _justified(self, decision: Decision) -> Decision:
        """The study's own choice reduced to the changes with a measured effect (the ``justified`` record
        of :mod:`experiments.study.justify`), when that trial is complete and feasible."""
        j = self.attrs.get("justified")
        if not isinstance(j, dict) or not isinstance(j.get("trial"), int):
            return decision
        t = next((x for x in self.complete if x.number == j["trial"]), None)
        if t is None or not _feasible(t):
            return decision
        kept = sum(bool(k.get("kept")) for k in (j.get("knobs") or {}).values() if isinstance(k, dict))
        why = (f"trial {j.get('of_trial')} chosen ({decision.reason}); {j.get('note', '')}; "
               f"{kept} of {len(j.get('knobs') or {})} changes kept by re-measurement")
        return Decision(t, why, decision.rule, [], decision.noisy_front, [t.number])

    # ------------------------------------------------------- read models
    def trial_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready row per trial (``study show --json``, ``GET /studies/{id}/trials``)."""
        knee = self.knee_trial()
        front = {t.number for t in self.front_trials()}
        rows = []
        for t in self.trials:
            metrics = t.user_attrs.get("metrics", {})
            rows.append({
                "trial": t.number,
                "state": t.state.name.lower(),
                "feasible": _feasible(t),
                "pareto": t.number in front,
                "knee": knee is not None and t.number == knee.number,
                "values": dict(zip(self.objectives, t.values)) if t.values else None,
                "knobs": self.knob_values(t),
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
                "reason": t.user_attrs.get("reason") or _stale_reason(t),
                "host": t.user_attrs.get("host"),  # a fleet study's trial: the host whose agent ran it
                "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
                "finished": t.datetime_complete.isoformat(timespec="seconds") if t.datetime_complete else None,
            })
        return rows

    def host_baselines(self) -> dict[str, dict[str, Any]]:
        """A fleet study's hosts as found (each agent measures its host once, before its first trial):
        host -> objective values, state and knob values."""
        out = {}
        for key, rec in sorted(self.attrs.items()):
            if key.startswith("baseline@") and isinstance(rec, dict):
                metrics = rec.get("metrics") or {}
                out[key.split("@", 1)[1]] = {"state": rec.get("state"), "knobs": rec.get("knobs") or {},
                                             "values": {o: metrics.get(o) for o in self.objectives}}
        return out

    def baseline_trial(self) -> FrozenTrial | None:
        """The complete trial that measured the values found before the study (its first trial)."""
        return next((t for t in self.complete if t.user_attrs.get("baseline")), None)

    def versus_baseline(self, chosen: int | None = None) -> dict[str, Any] | None:
        """How the study's trials compare with the baseline: which feasible trials are better on every
        objective (dominate it; largest mean improvement first), and the chosen trial's change per
        objective, in percent of the baseline's value. None when the baseline trial did not complete.

        ``chosen``: the trial to describe (default: the study's choice, :meth:`decide`).
        """
        base = self.baseline_trial()
        if base is None:
            return None
        done = self.complete
        vals = np.array([t.values for t in done], dtype=float).reshape(len(done), len(self.directions))
        ref = next(i for i, t in enumerate(done) if t.number == base.number)
        vs = versus_reference(vals, [_feasible(t) for t in done], self.directions, ref)

        def pct(i: int) -> dict[str, float | None]:
            return {o: (round(float(c) * 100, 2) if math.isfinite(c) else None)
                    for o, c in zip(self.objectives, vs.change[i])}

        if chosen is None:
            try:
                chosen = self.decide().trial.number
            except ValueError:
                chosen = None
        out: dict[str, Any] = {
            "trial": base.number,
            "feasible": _feasible(base),
            "values": dict(zip(self.objectives, base.values)),
            "dominating": [{"trial": done[i].number, "change_pct": pct(i)} for i in vs.dominating],
            "chosen": None,
        }
        idx = next((i for i, t in enumerate(done) if t.number == chosen), None)
        if idx is not None:
            better = [o for o, b in zip(self.objectives, vs.better[idx]) if b]
            worse = [o for o, w in zip(self.objectives, vs.worse[idx]) if w]
            verdict = ("the baseline itself" if idx == ref else
                       "better than the baseline on every objective" if idx in vs.dominating else
                       f"a trade-off: better in {', '.join(better) or 'nothing'}, "
                       f"worse in {', '.join(worse) or 'nothing'}")
            out["chosen"] = {"trial": chosen, "change_pct": pct(idx), "better": better, "worse": worse,
                             "verdict": verdict}
        return out

    def pareto_report(self) -> dict[str, Any]:
        """The feasible Pareto front (trial rows), the chosen configuration (or why there is none) and the
        comparison with the baseline (``study pareto --json``, ``GET /studies/{id}/pareto``)."""
        front = [r for r in self.trial_rows() if r["pareto"]]
        try:
            d = self.decide()
            choice: dict[str, Any] = {"trial": d.trial.number, "rule": d.rule, "reason": d.reason,
                                      "equivalent": d.equivalent, "noisy_front": d.noisy_front}
        except ValueError as err:
            choice = {"trial": None, "reason": str(err)}
        return {"study": self.name, "objectives": dict(zip(self.objectives, self.directions)), "front": front,
                "choice": choice, "versus_baseline": self.versus_baseline(choice["trial"])}

    def summary(self) -> dict[str, Any]:
        """How the search went: sampler, why it stopped, convergence, the choice, knob importance."""
        from experiments.study.target_neighbour import acts_on  # the spec's target, when it has one

        return {
            "knobs_act_on": acts_on(self.attrs.get("spec")),
            "sampler": self.attrs.get("sampler_reason") or self.attrs.get("sampler"),
            "stop_reason": self.attrs.get("stop_reason"),
            "convergence": self.attrs.get("convergence"),
            "choice": self.attrs.get("choice"),
            "importance": self.attrs.get("importance"),
            "profile_changes": self.attrs.get("profile_changes"),
            "justified": self.attrs.get("justified"),
        }

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
