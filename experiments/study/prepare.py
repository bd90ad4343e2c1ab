"""A study spec checked against this machine, once, before anything is named, claimed or started.

:func:`prepare` builds the workload (which validates its options and starts
nothing), resolves the spec's knobs against the catalog (names, hard bounds,
the metrics objectives and constraints may use) and loads the unit prices.
What it returns, a :class:`StudyPlan`, is everything the run needs from the
spec; a bad spec is a :class:`~experiments.spec.SpecError` listing every
problem, and nothing has happened yet.

The operator's settings that bound what a study may reach are read here, once,
and carried by the plan: a passive workload's :class:`PassivePolicy` (allowed
targets, checked now and again whenever the run lists the target's processes;
hosts a probe may name) and the protected interfaces whose ``nic.*`` knobs are
refused.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actuators import KnobContext
from collectors.errors import CollectorError, WorkloadError
from collectors.passive.allowed import PassivePolicy
from collectors.passive.target import PassiveWorkload
from collectors.pricing import UnitPrices, load_unit_prices
from collectors.workloads.base import Workload
from collectors.workloads.registry import build_workload
from experiments.settings import Paths, Settings, config_file
from experiments.spec import SpecError, StudySpec
from experiments.study.metric_names import allowed_metrics
from experiments.study.resolve import Resolved, resolve
from experiments.study.target_disk import disk_problems
from experiments.study.target_loop import loop_problems
from experiments.study.target_memory import memory_problems
from experiments.study.target_neighbour import check_neighbour, neighbour_metrics
from experiments.study.target_netns import TargetCatalog, check_netns_target

__all__ = ["StudyPlan", "prepare", "run_workload"]


@dataclass(frozen=True)
class StudyPlan:
    """A validated spec and what was derived from it.

    ``resolved`` maps every spec knob to its parameter (hard bounds checked, availability not: that
    depends on what the run sets up); ``metric_names`` are the names objectives and constraints may use.
    """

    spec: StudySpec
    source: str
    n_trials: int
    metric_names: tuple[str, ...]
    resolved: Resolved
    prices: UnitPrices
    #: a passive workload's allowed targets and probe hosts (the settings when prepared)
    policy: PassivePolicy = field(default_factory=PassivePolicy)
    #: interfaces whose nic.* knobs are refused (the setting ``protected_interfaces``)
    protected_interfaces: tuple[str, ...] = ("default-route",)

    #: the operator's ``workload_allowed_paths`` when the spec was checked (where the workload may write)
    allowed_paths: tuple[str, ...] = ()
    #: a per-host fleet study's hosts warm-start from each other: their target is the fleet study's, not
    #: the host's (:attr:`target_key`)
    fleet: str | None = None

    def build_workload(self, workdir: Path, *, paths: Paths) -> Workload:
        """The spec's workload (not started), bound to the plan's :attr:`policy` and :attr:`allowed_paths`."""
        return run_workload(self.spec, workdir, paths=paths, allowed_paths=self.allowed_paths, policy=self.policy)

    @property
    def objectives(self) -> list[str]:
        return list(self.spec.objectives)

    @property
    def directions(self) -> list[str]:
        return [self.spec.objectives[m] for m in self.objectives]

    @property
    def target_key(self) -> str:
        """What "the same target" means for warm starts: the workload as specified (and the spec's ``target``
        section when it has one: a veth pair is not loopback), on this host (or, for a per-host fleet study,
        on any host of that fleet study)."""
        what: Any = self.spec.workload.model_dump(mode="json")
        if self.spec.target is not None:
            what = {"workload": what, "target": self.spec.target.model_dump(mode="json")}
        where = f"fleet/{self.fleet}" if self.fleet else socket.gethostname()
        return f"{where}:{json.dumps(what, sort_keys=True)}"

    def spec_attrs(self) -> dict[str, Any]:
        """The spec as the study records it (user attribute ``spec``)."""
        return self.spec.model_dump(mode="json")


def run_workload(spec: StudySpec, workdir: Path, *, paths: Paths, allowed_paths: Sequence[str],
                 policy: PassivePolicy | None = None) -> Workload:
    """The one place a study builds its workload: whatever it writes by path stays in ``workdir`` (its
    scratch directory) or under the operator's ``allowed_paths``, never in the data directory or the
    settings file (:mod:`collectors.safepath`); a passive one is bound to ``policy`` (the operator's
    allowed targets and probe hosts; default: the strict policy, which allows no target).

    Raises:
        WorkloadError / CollectorError / ValueError / TypeError: see :func:`build_workload`.
    """
    return build_workload(spec.workload, workdir, policy=policy, allowed_roots=allowed_paths,
                          protected=(paths.home, config_file()))


def prepare(
    spec: StudySpec, *, paths: Paths, trials: int | None = None, source: str = "<spec>",
    settings: Settings | None = None, allowed_paths: Sequence[str] | None = None,
) -> StudyPlan:
    """Check ``spec`` on this machine: trial budget, workload options (paths included; a passive target
    allowed, its URLs loopback or allowed), knobs (none on a protected interface), metrics, prices.

    ``settings`` default to :meth:`Settings.load` (now); ``allowed_paths``, the roots besides its scratch
    directory where the workload may write, to the setting ``workload_allowed_paths``.

    Raises:
        SpecError: every problem found, with what is allowed; nothing was started or written.
        SettingsError: the settings are invalid.
    """
    n_trials = trials if trials is not None else spec.budget.trials
    if n_trials < 1:
        raise SpecError(source, [f"--trials must be >= 1, got {n_trials}"])
    target_problems = loop_problems(spec, paths.runs) + memory_problems(spec) + disk_problems(spec, paths.runs)
    if target_problems:
        raise SpecError(source, target_problems)
    settings = settings if settings is not None else Settings.load()
    policy = PassivePolicy.of(settings.allowed_targets, settings.allowed_probe_hosts)
    protected = tuple(settings.protected_interfaces)
    roots = tuple(settings.workload_allowed_paths if allowed_paths is None else allowed_paths)
    try:
        probe = run_workload(spec, paths.home / "runs" / ".check", paths=paths, allowed_paths=roots, policy=policy)
        if isinstance(probe, PassiveWorkload):
            probe.check_target()
    except (WorkloadError, CollectorError, ValueError, TypeError) as err:
        raise SpecError(source, [f"workload ({spec.workload.kind}): {err}"]) from None
    neighbour = spec.target.neighbour if spec.target is not None else None
    if neighbour is not None and (problems := check_neighbour(spec.workload.kind, list(spec.knobs))):
        raise SpecError(source, problems)
    if problems := check_netns_target(spec):
        raise SpecError(source, problems)
    metric_names = tuple(allowed_metrics(probe.metric_names())) + neighbour_metrics(neighbour)
    catalog = TargetCatalog(KnobContext(protected_interfaces=protected))  # nic.@target.*: checked, bound later
    resolved = resolve(spec, catalog, check_availability=False, source=source, metrics=metric_names)
    prices = load_unit_prices(profile=spec.cost.profile, model=spec.cost.pricing_model)
    return StudyPlan(spec=spec, source=source, n_trials=n_trials, metric_names=metric_names, resolved=resolved,
                     prices=prices, policy=policy, protected_interfaces=protected, allowed_paths=roots)
