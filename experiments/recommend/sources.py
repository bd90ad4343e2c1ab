"""Where recommendations come from, each turned into :class:`optimizer.advice.Advice`.

* the advisors: ``collectors.facts.<name>.read(root=...)`` then ``optimizer.advisors.<name>.advise(facts)``
  for each name of :data:`ADVISOR_NAMES`;
* right-sizing: every observed target's recommendation (no proposal recorded);
* finished studies: the configuration each study chose, where it beat the study's own baseline.

A source that fails does not hide the others: its error comes back as a note (``(source, why)``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from collectors.errors import NovatuneError
from experiments.settings import Paths, Settings
from optimizer.advice import Advice, Change, Evidence

__all__ = ["ADVISOR_NAMES", "advisor_advice", "rightsizing_advice", "study_advice"]

#: the advisors, in the order they run
ADVISOR_NAMES = ("io", "network", "numa", "pinning")

_RISK = {"low": 1.0, "medium": 2.0, "high": 3.0}

Note = tuple[str, str]


def advisor_advice(root: str | Path = "/", *, names: tuple[str, ...] = ADVISOR_NAMES,
                   read: Callable[[str, str | Path], Any] | None = None) -> tuple[list[Advice], list[Note]]:
    """Run each advisor on the facts of the machine at ``root`` (``/`` or a fixture tree)."""
    advice: list[Advice] = []
    notes: list[Note] = []
    for name in names:
        try:
            facts = read(name, root) if read is not None else _read_facts(name, root)
            advice.extend(importlib.import_module(f"optimizer.advisors.{name}").advise(facts))
        except (NovatuneError, OSError, ValueError, LookupError) as err:
            notes.append((name, f"{type(err).__name__}: {err}"))
    return advice, notes


def _read_facts(name: str, root: str | Path) -> Any:
    return importlib.import_module(f"collectors.facts.{name}").read(root=str(root))


def rightsizing_advice(paths: Paths, settings: Settings) -> tuple[list[Advice], list[Note]]:
    """One advice per observed live target whose recommendation would change its size."""
    from experiments.rightsizing.engine import Rightsizing

    if not paths.usage_db.exists():
        return [], []
    engine = Rightsizing(paths, settings)
    out: list[Advice] = []
    notes: list[Note] = []
    for info in engine.targets():
        try:
            a = engine.analyse(info)
        except (NovatuneError, ValueError) as err:
            notes.append(("rightsizing", f"{info.name}: {err}"))
            continue
        adv = _rightsizing_one(a.to_dict())
        if adv is not None:
            out.append(adv)
    return out, notes


def _rightsizing_one(d: dict[str, Any]) -> Advice | None:
    if d["finding"] in ("insufficient-data", "optimized") or d["kind"] != "live":
        return None
    cur_cpu, cur_mem = d["current_cpu_cores"], d["current_mem_gib"]
    saving = d["cost"].get("savings_usd_per_month")
    changes = (Change("rightsize.cpu_cores", d["cpu_cores"], cur_cpu),
               Change("rightsize.memory_gib", d["mem_gib"], cur_mem))
    rel = 0.0
    if cur_cpu and cur_mem:  # the allocation it frees (or adds), as a share of the current one
        rel = abs(1 - (d["cpu_cores"] / cur_cpu + d["mem_gib"] / cur_mem) / 2)
    return Advice(
        advisor="rightsizing", target=d["target"], metric="cost_usd_month",
        title=f"{d['finding']}: size {d['target']} to {d['cpu_cores']:g} cores / {d['mem_gib']:g} GiB",
        why=f"its observed usage over {d['history_hours']:g} h fits {d['cpu_cores']:g} cores and "
            f"{d['mem_gib']:g} GiB (profile {d['recommendation'].get('profile', '?')})",
        changes=changes, expected_impact=round(rel, 3), confidence=float(d["confidence"]),
        risk=float(d["risk"]), usd_per_month=saving,
        evidence=(Evidence("history", d["history_hours"], "h", "usage store"),
                  Evidence("current size", f"{cur_cpu} cores / {cur_mem} GiB", "", "cgroup limits"),
                  Evidence("saving", saving, "USD/month", "collectors/data unit prices")),
        manual=f"novatune rightsize apply {d['target']}  (approve first: novatune rightsize approve {d['target']})",
    )


def study_advice(paths: Paths) -> tuple[list[Advice], list[Note]]:
    """The configuration every finished study chose, where it improved on the study's baseline."""
    from experiments.study.results import list_studies, load_view

    if not paths.has_studies:
        return [], []
    out: list[Advice] = []
    notes: list[Note] = []
    for s in list_studies(paths.optuna_url):
        if s["state"] not in ("finished", "completed", "done"):
            continue
        try:
            adv = _study_one(load_view(paths.optuna_url, s["name"]))
        except (NovatuneError, ValueError, LookupError) as err:
            notes.append(("study", f"{s['name']}: {err}"))
            continue
        if adv is not None:
            out.append(adv)
    return out, notes


def _study_one(view: Any) -> Advice | None:
    from actuators.registry import REGISTRY
    from experiments.deploy.applications import default_catalog

    vs = view.versus_baseline()
    if vs is None or vs["chosen"] is None or vs["chosen"]["trial"] == vs["trial"]:
        return None
    chosen = view.trial(vs["chosen"]["trial"])
    base = view.trial(vs["trial"])
    new, old = view.knob_values(chosen), view.knob_values(base)
    host = {k: v for k, v in new.items() if old.get(k) != v and not REGISTRY.workload_bound(k)}
    if not host:
        return None
    primary = view.objectives[0]
    change = vs["chosen"]["change_pct"].get(primary)
    if change is None or not math.isfinite(change):
        return None
    gain = change / 100.0 if view.directions[0] == "maximize" else -change / 100.0
    if gain <= 0:
        return None
    cat = default_catalog()
    risk = max((_RISK.get(getattr(_knob(cat, k), "risk", "medium"), 2.0) for k in host), default=2.0)
    confidence = 0.9 if "better than the baseline on every objective" in vs["chosen"]["verdict"] else 0.6
    return Advice(
        advisor="study", metric=primary, expected_impact=round(gain, 4), confidence=confidence, risk=risk,
        measured=True, title=f"apply study {view.name}'s choice (trial {chosen.number})",
        why=f"measured {primary} {change:+.1f} % against the study's baseline ({vs['chosen']['verdict']})",
        changes=tuple(Change(k, v, old.get(k)) for k, v in sorted(host.items())),
        evidence=tuple(Evidence(f"{o} change", p, "%", f"study {view.name}")
                       for o, p in vs["chosen"]["change_pct"].items()),
    )


def _knob(cat: Any, name: str) -> Any:
    try:
        return cat.get(name)
    except (NovatuneError, LookupError, ValueError):
        return None
