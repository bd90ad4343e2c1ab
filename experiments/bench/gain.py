"""``novatune bench gain SPEC``: novatune's choice against the defaults and the stock TuneD profiles, in one run.

For a scenario spec and a finished study of it, :func:`gain_run` starts the spec's workload once (and what
the spec's ``target`` makes), exactly as a study run does (:class:`~experiments.study.setup.RunContext`),
then measures the *arms* -- ``defaults`` (the machine as found), every stock TuneD profile that sets a
knob usable here (:mod:`experiments.deploy.tuned_stock`, applied through novatune's own journaled
actuators, bound to the run as the study's knobs are) and ``novatune`` (the study's export: its justified
choice) -- in ``rounds`` *screening* rounds, each arm once per round in a shuffled order
(:func:`optimizer.gain.arm_order`), then ``confirm`` *confirmation* rounds of the defaults, the profile
that did best in the screening rounds and novatune. Every window is a journaled apply, measure, restore;
the knobs every arm touches are held machine-wide for the whole run.

The report (:func:`optimizer.gain.compare`): per arm the median of the primary metric (the spec's first
objective, or ``metric``), its gain over the defaults with the interval and p-value; the best profile
against the defaults and novatune against the best profile on the confirmation rounds only (the best of
six noisy profiles, judged on the rounds that picked it, looks better than it is); a null result is said
as one. Stored as JSON under ``gain/`` in the
data directory (:func:`list_gains`).
"""

from __future__ import annotations

import json
import math
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from actuators import ActuatorError, Catalog, ChangeSession, Journal, Knob, recover
from collectors.errors import NovatuneError
from experiments.deploy.export import ExportError, chosen_configuration
from experiments.deploy.tuned_stock import DEFAULT_DIRS, STOCK_PROFILES, TunedProfileError, resolve_profile
from experiments.holds import KnobHeld, KnobHolds
from experiments.safefs import write_file
from experiments.settings import Paths
from experiments.spec import StudySpec
from experiments.study.justify import metric_directions
from experiments.study.manager import StudyConflict, host_wide
from experiments.study.measure import Measurer
from experiments.study.outcomes import signals_raise
from experiments.study.prepare import prepare
from experiments.study.results import load_view
from experiments.study.setup import RunContext
from optimizer.gain import Comparison, arm_order, compare, verdict

__all__ = ["GainError", "gain_run", "list_gains", "load_gain"]

Progress = Callable[[str, dict[str, Any]], None]


class GainError(NovatuneError, ValueError):
    """The gain run cannot start (no such study, an unknown metric, too few rounds): exit 2, HTTP 422."""

    exit_code = 2
    http_status = 422


@dataclass
class Arm:
    """One configuration measured: its knobs bound to the run, the values by name, what could not be used."""

    name: str
    source: str
    knobs: dict[Knob, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


class _GainContext(RunContext):
    """The spec's run context; the gain run holds the knobs of every arm itself (not only the spec's)."""

    def _hold_knobs(self) -> None:
        """Held by :func:`gain_run` for all arms."""


def _bind(name: str, values: dict[str, Any], catalog: Catalog, source: str) -> Arm:
    arm = Arm(name, source)
    for knob_name, raw in values.items():
        try:
            knob = catalog.get(knob_name)
            why = knob.available()
            if why:
                raise ActuatorError(why)
            value = knob.validate(raw, assume=values)  # an ordering (dirty_background < dirty) within the set
        except (ActuatorError, NovatuneError, ValueError) as err:
            arm.skipped.append(f"{knob_name}={raw}: {err}")
            continue
        arm.knobs[knob] = value
        arm.values[knob_name] = value
    return arm


def _study_doc(paths: Paths, study: str) -> dict[str, Any]:
    """The study's export (its justified choice). Raises GainError when there is none."""
    try:
        doc = chosen_configuration(load_view(paths.optuna_url, study))
    except (ExportError, LookupError) as err:
        raise GainError(f"study {study!r}: {err}; run `novatune study run SPEC` first") from None
    return {"study": study, **doc}


def _study_arm(doc: dict[str, Any], catalog: Catalog) -> Arm:
    study = doc["study"]
    arm = _bind("novatune", doc["knobs"], catalog, f"study {study}, trial {doc['trial']}: {doc['chosen_by']}")
    arm.skipped += [f"{k}: left as found ({why})" for k, why in (doc.get("left_as_found") or {}).items()]
    return arm


def _profile_arms(profiles: Sequence[str], dirs: Sequence[Path], catalog: Catalog,
                  devices: Sequence[str]) -> tuple[list[Arm], dict[str, str]]:
    arms, not_applied = [], {}

    def current(knob: str) -> Any:
        return catalog.get(knob).read()

    for p in profiles:
        try:
            resolved = resolve_profile(p, dirs=dirs, devices=devices, current=current)
        except TunedProfileError as err:
            not_applied[p] = str(err)
            continue
        arm = _bind(p, resolved.values, catalog, "TuneD " + " -> ".join(resolved.chain))
        arm.skipped += resolved.skipped
        if arm.knobs:
            arms.append(arm)
        else:
            not_applied[p] = "sets no knob usable here: " + "; ".join(arm.skipped)[:500]
    return arms, not_applied


def _metric(spec: StudySpec, metric: str | None) -> tuple[str, str]:
    directions = metric_directions(spec)
    name = metric if metric is not None else next(iter(directions))  # default: the first objective
    if name in directions:
        return name, directions[name]
    allowed = ", ".join(directions)
    raise GainError(f"metric {metric!r} is not an objective or SLA metric of spec {spec.name!r}; allowed: {allowed}")


def _measure(ctx: RunContext, plan: Any, journal: Journal, run_id: str, arms: list[Arm],
             order: Sequence[tuple[int, str]], progress: Progress, *, first: int = 0,
             steps: int = 0) -> list[dict[str, Any]]:
    """Every ``(round, arm)`` window of ``order``: a journaled apply, one measurement window, restore.
    ``first`` numbers the windows on from an earlier stage; ``steps`` is the run's total for progress."""
    measurer = Measurer(plan, ctx)
    series: list[pd.DataFrame] = []
    timelines: list[pd.DataFrame] = []
    units: dict[str, str] = {}
    by_name = {a.name: a for a in arms}
    windows = []
    for i, (r, name) in enumerate(order, start=first):
        arm = by_name[name]
        entry: dict[str, Any] = {"round": r, "arm": name, "started": time.time()}
        session = ChangeSession(journal, run_id=run_id, trial=i)
        try:
            with session:
                session.apply_many(arm.knobs)
                raw = measurer.window(i, series, timelines, units)
            full = measurer.reduce([raw], arm.values, throughput_unit=units.get("throughput", ""))
            entry["metrics"] = {k: float(v) for k, v in full.items() if isinstance(v, int | float) and math.isfinite(v)}
        except (ActuatorError, NovatuneError, OSError, ValueError) as err:
            entry["error"] = f"{type(err).__name__}: {err}"
        if session.failures:  # a window's failure is its own; a restore that failed ends the run
            raise ActuatorError("restore failed: " + "; ".join(map(str, session.failures)))
        windows.append(entry)
        progress("window", {"step": i + 1, "steps": steps or first + len(order), **entry})
    return windows


def _medians(windows: list[dict[str, Any]], arm: str, names: Sequence[str]) -> dict[str, float]:
    """The arm's median of each of ``names`` over its windows (the trade-offs behind the primary metric)."""
    out = {}
    for n in names:
        vals = [w["metrics"][n] for w in windows if w["arm"] == arm and n in (w.get("metrics") or {})]
        if vals:
            out[n] = statistics.median(vals)
    return out


def _values(windows: list[dict[str, Any]], arms: list[Arm], metric: str,
            keep: Callable[[int], bool] = lambda r: True) -> dict[str, dict[int, float]]:
    """``values[arm][round]``: each arm's primary metric in the rounds ``keep`` lets through."""
    values: dict[str, dict[int, float]] = {a.name: {} for a in arms}
    for w in windows:
        v = (w.get("metrics") or {}).get(metric)
        if v is not None and keep(w["round"]):
            values[w["arm"]][w["round"]] = v
    return values


def _cmp(values: dict[str, dict[int, float]], a: str, b: str | None, metric: str,
         direction: str) -> Comparison | None:
    if b is None:
        return None
    try:
        return compare(values, a, b, metric=metric, direction=direction)
    except ValueError:  # fewer than two paired rounds
        return None


def best_profile(windows: list[dict[str, Any]], arms: list[Arm], metric: str, direction: str,
                 screening: int) -> str | None:
    """The stock profile with the largest gain over the defaults in the screening rounds ``0..screening-1``
    (None when no profile was measured in two of them)."""
    values = _values(windows, arms, metric, lambda r: r < screening)
    gains = {a.name: c.gain_pct for a in arms if a.name not in ("defaults", "novatune")
             and (c := _cmp(values, a.name, "defaults", metric, direction)) is not None}
    return max(gains, key=lambda p: gains[p], default=None)


def _report(windows: list[dict[str, Any]], arms: list[Arm], metric: str, direction: str,
            others: Sequence[str] = (), *, screening: int) -> dict[str, Any]:
    """Every arm against the defaults over all its rounds; the best profile, picked on the screening rounds,
    against the defaults and against novatune on the confirmation rounds only (rounds ``screening`` on), so
    that picking the luckiest of several profiles does not flatter it. Without confirmation rounds the pick
    and the comparison share their rounds, which favours the profile."""
    values = _values(windows, arms, metric)
    vs_defaults = {a.name: c for a in arms if a.name != "defaults"
                   and (c := _cmp(values, a.name, "defaults", metric, direction)) is not None}
    best = best_profile(windows, arms, metric, direction, screening)
    confirmed = any(w["round"] >= screening for w in windows)
    later = _values(windows, arms, metric, lambda r: r >= screening) if confirmed else values
    vs_best = _cmp(later, "novatune", best, metric, direction)
    best_vs_defaults = _cmp(later, best, "defaults", metric, direction) if best else None
    nt = vs_defaults.get("novatune")
    keeps = not next((a.knobs for a in arms if a.name == "novatune"), {})  # the same configuration as the defaults

    def arm_doc(a: Arm) -> dict[str, Any]:
        c = vs_defaults.get(a.name)
        return {"source": a.source, "knobs": a.values, "skipped": a.skipped,
                "median": statistics.median(values[a.name].values()) if values[a.name] else None,
                "rounds": len(values[a.name]), "vs_defaults": c.as_dict() if c else None,
                "medians": _medians(windows, a.name, others)}

    last = max((w["round"] for w in windows), default=screening - 1) + 1
    return {
        "metric": metric, "direction": direction,
        "arms": {a.name: arm_doc(a) for a in arms},
        "best_profile": best,
        "best_profile_picked_on": f"rounds 1-{screening}",
        "compared_on": f"rounds {screening + 1}-{last} (confirmation)" if confirmed else
                       f"rounds 1-{screening}, the rounds it was picked on (no confirmation: favours the profile)",
        "best_profile_vs_defaults": best_vs_defaults.as_dict() if best_vs_defaults else None,
        "novatune_vs_best_profile": vs_best.as_dict() if vs_best else None,
        "novatune_keeps_defaults": keeps,
        "verdict": verdict(nt, vs_best, identical=keeps) if nt else "novatune's arm was not measured in two rounds: "
                                                                    "no verdict",
    }


def _gain_dir(paths: Paths) -> Path:
    d = paths.home / "gain"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _run_arms(plan: Any, paths: Paths, gid: str, journal: Journal, *, study: dict[str, Any], profiles: Sequence[str],
              dirs: Sequence[Path], rounds: int, confirm: int, metric: tuple[str, str],
              progress: Progress) -> tuple[list[Arm], dict[str, str], list[Any]]:
    """The run itself: the spec's workload (and target) up, the arms bound, held and measured: ``rounds``
    screening rounds of every arm, then ``confirm`` rounds of the defaults, the best profile and novatune."""
    with _GainContext(plan, paths=paths, name=gid, run_id=gid, journal=journal,
                      workdir=_gain_dir(paths) / gid) as ctx:
        catalog = ctx.catalog()
        arms = [Arm("defaults", "the machine as found: nothing applied")]
        found, not_applied = _profile_arms(profiles, dirs, catalog,
                                           ctx.resolved.block_devices())  # type: ignore[union-attr]
        arms += [*found, _study_arm(study, catalog)]
        for arm in arms:  # a namespace pair: every net.* value in both namespaces
            for name, twins in ctx.mirrors(list(arm.values)).items():
                arm.knobs.update(dict.fromkeys(twins, arm.values[name]))
        holds = KnobHolds(host_wide(k for a in arms for k in a.knobs), owner=f"gain run {gid} in {paths.home}")
        try:
            holds.acquire()
        except KnobHeld as err:
            raise StudyConflict(str(err)) from None
        seed = plan.spec.sampler.seed
        try:
            steps = rounds * len(arms) + confirm * min(3, len(arms))
            progress("start", {"id": gid, "arms": [a.name for a in arms], "rounds": rounds, "confirm": confirm,
                               "not_applied": not_applied})
            windows = _measure(ctx, plan, journal, gid, arms, arm_order([a.name for a in arms], rounds, seed=seed),
                               progress, steps=steps)
            best = best_profile(windows, arms, *metric, screening=rounds)
            if confirm:
                finalists = ["defaults", *([best] if best else []), "novatune"]
                progress("confirm", {"best_profile": best, "rounds": confirm})
                order = [(rounds + r, a) for r, a in arm_order(finalists, confirm, seed=None if seed is None
                                                                                    else seed + 1)]
                windows += _measure(ctx, plan, journal, gid, arms, order, progress, first=len(windows), steps=steps)
        finally:
            holds.release()
    return arms, not_applied, windows


def gain_run(spec: StudySpec, *, paths: Paths, source: str = "<spec>", study: str | None = None,
             profiles: Sequence[str] = STOCK_PROFILES, dirs: Sequence[Path] = DEFAULT_DIRS, rounds: int = 5,
             confirm: int | None = None, metric: str | None = None,
             progress: Progress | None = None) -> dict[str, Any]:
    """Measure the defaults, the stock profiles and novatune's choice of ``study`` (default: the spec's
    name) on the spec's workload in ``rounds`` interleaved rounds, then the defaults, the best profile of
    those rounds and novatune in ``confirm`` more (default: ``rounds``; 0: none); store and return the report.

    Raises:
        GainError: fewer than 2 rounds, a bad confirm, an unknown metric or study; SpecError: the spec does not
            run here;
        StudyConflict: another novatune process holds one of the knobs; Interrupted: SIGTERM (all restored).
    """
    if not 2 <= rounds <= 50:
        raise GainError(f"rounds must be 2..50 (a paired interval needs two), got {rounds}")
    confirm = rounds if confirm is None else confirm
    if confirm != 0 and not 2 <= confirm <= 50:
        raise GainError(f"confirm must be 0 (none) or 2..50 (a paired interval needs two), got {confirm}")
    metric_name, direction = _metric(spec, metric)
    progress = progress or (lambda kind, fields: None)
    plan = prepare(spec, paths=paths.ensure(), source=source)
    study = study or spec.name
    chosen = _study_doc(paths, study)  # before anything starts
    journal = Journal(paths.journal)
    recover(journal)
    gid = f"gain-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    with signals_raise(), journal.run(gid):
        arms, not_applied, windows = _run_arms(plan, paths, gid, journal, study=chosen, profiles=profiles,
                                               dirs=dirs, rounds=rounds, confirm=confirm,
                                               metric=(metric_name, direction), progress=progress)
    doc = {"id": gid, "spec": spec.name, "study": study, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "rounds": rounds, "confirm": confirm, "seconds": round(time.monotonic() - t0, 1), "not_applied": not_applied,
           **_report(windows, arms, metric_name, direction, [*spec.objectives, *spec.constraints], screening=rounds),
           "windows": windows}
    write_file(_gain_dir(paths) / f"{gid}.json", (json.dumps(doc, indent=2, default=str) + "\n").encode())
    progress("done", {"id": gid, "verdict": doc["verdict"]})
    return doc


def list_gains(paths: Paths) -> list[dict[str, Any]]:
    """Every stored gain report's id, spec, time and verdict, oldest first."""
    out = []
    for f in sorted((paths.home / "gain").glob("gain-*.json")):
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        out.append({k: doc.get(k) for k in ("id", "spec", "study", "time", "metric", "verdict")})
    return out


def load_gain(paths: Paths, gid: str) -> dict[str, Any]:
    """One stored report. Raises GainError naming the stored ids when there is no such report."""
    known = [g["id"] for g in list_gains(paths)]
    if gid not in known:
        raise GainError(f"no gain report {gid!r}; stored: {', '.join(known) or '(none yet)'}")
    doc: dict[str, Any] = json.loads((paths.home / "gain" / f"{gid}.json").read_text())
    return doc
