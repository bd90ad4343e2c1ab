"""Study specifications: the YAML/JSON a user writes, validated with pydantic.

Two stages, both user errors (never tracebacks):

1. :func:`load_spec` / :func:`parse_spec` check the shape: unknown fields,
   wrong types, a knob given both a range and choices, a constraint without a
   bound. The message lists what is allowed.
2. ``experiments.study.resolve.resolve`` checks the spec against this machine's knob
   catalog (names, hard bounds, choices) and the metrics a workload reports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from collectors.errors import NovatuneError
from experiments.settings import NAME_RE  # the one study-name rule (settings.check_name)
from experiments.study.target_disk import DiskSpec
from experiments.study.target_loop import LoopSpec
from experiments.study.target_memory import MemoryTargetSpec
from experiments.study.target_neighbour import NeighbourSpec
from experiments.study.target_netns import NetnsTargetSpec

__all__ = [
    "WORKLOAD_SPECS",
    "BudgetSpec",
    "ChooseSpec",
    "ConstraintSpec",
    "ConvergenceSpec",
    "CostSpec",
    "KnobSpec",
    "NoiseSpec",
    "SamplerSpec",
    "SpecError",
    "SteadySpec",
    "StudySpec",
    "TargetSpec",
    "TrialSpec",
    "TrustRegionSpec",
    "WarmStartSpec",
    "WorkloadSpec",
    "load_spec",
    "parse_spec",
]


class SpecError(NovatuneError, ValueError):
    """A study spec is invalid; ``problems`` lists every problem found, one per line (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"invalid study spec {source}:\n" + "\n".join(f"  - {p}" for p in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KnobSpec(_Strict):
    """Either a numeric range ``{low, high[, step, log]}`` or ``{choices: [...]}``."""

    low: float | None = None
    high: float | None = None
    step: float | None = Field(default=None, gt=0)
    log: bool = False
    choices: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_form(self) -> KnobSpec:
        numeric = self.low is not None or self.high is not None
        if numeric and self.choices is not None:
            raise ValueError("give either low/high or choices, not both")
        if not numeric and self.choices is None:
            raise ValueError("give a range {low, high} or {choices: [...]}")
        if numeric and (self.low is None or self.high is None):
            raise ValueError("a range needs both low and high")
        if numeric and self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} is above high {self.high}")
        return self


class ConstraintSpec(_Strict):
    """An SLA threshold: the metric must stay at or below ``max`` / at or above ``min``."""

    max: float | None = None
    min: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> ConstraintSpec:
        if (self.max is None) == (self.min is None):
            raise ValueError("give exactly one of max or min")
        return self


class SteadySpec(_Strict):
    """Score a trial on its steady part: the longest stretch where ``metric`` varies by at most ``max_cv``.

    ``metric`` is a series metric of the trial (see ``experiments.study.metric_names.SERIES_METRICS``);
    the coefficient of variation is taken over a sliding ``window_s``.
    """

    metric: str = "host_cpu_util_pct"
    window_s: float = Field(default=3.0, gt=0, le=3600)
    max_cv: float = Field(default=0.25, gt=0, le=10)

    @field_validator("metric")
    @classmethod
    def _series_metric(cls, v: str) -> str:
        from experiments.study.metric_names import SERIES_METRICS

        if v not in SERIES_METRICS:
            raise ValueError(f"unknown series metric {v!r}; allowed: {', '.join(SERIES_METRICS)}")
        return v


class TrialSpec(_Strict):
    warmup_s: float = Field(default=2.0, ge=0, le=600)
    measure_s: float = Field(default=6.0, gt=0, le=3600)
    repeats: int = Field(default=1, ge=1, le=20)
    sample_interval_s: float = Field(default=1.0, ge=0.1, le=60)
    steady: SteadySpec | None = None


class BudgetSpec(_Strict):
    trials: int = Field(default=18, ge=1, le=10_000)
    timeout_s: float | None = Field(default=None, gt=0)


class WorkloadSpec(_Strict):
    """The built-in loopback OLTP service and its load generator (``kind: oltp``)."""

    kind: Literal["oltp"] = "oltp"
    workers: int = Field(default=2, ge=1, le=64)
    clients: int = Field(default=8, ge=1, le=512)


class FioWorkloadSpec(_Strict):
    """fio on a file in the study's work directory, or under a directory the operator allowed (the setting
    ``workload_allowed_paths``); never a device, a symlink or novatune's data directory."""

    kind: Literal["fio"]
    rw: str = "randread"
    bs: str = "4k"
    iodepth: int = Field(default=1, ge=1, le=1024)
    size: str = "32M"
    direct: bool = False
    numjobs: int = Field(default=1, ge=1, le=64)
    ioengine: str = "psync"
    fadvise_hint: bool = True
    fsync: int = Field(default=0, ge=0, le=1_000_000)
    filename: str | None = Field(default=None, min_length=1, max_length=4096)


class PgbenchWorkloadSpec(_Strict):
    """pgbench against a throwaway PostgreSQL cluster the study starts (needs root and user postgres)."""

    kind: Literal["pgbench"]
    clients: int = Field(default=2, ge=1, le=256)
    threads: int = Field(default=1, ge=1, le=64)
    scale: int = Field(default=1, ge=1, le=100)


class RedisBenchmarkWorkloadSpec(_Strict):
    """redis-benchmark against a redis-server (no persistence, unprivileged, on a private unix socket) the study
    starts."""

    kind: Literal["redis-benchmark"]
    requests: int = Field(default=5000, ge=100, le=1_000_000)
    clients: int = Field(default=10, ge=1, le=1000)
    tests: list[str] = Field(default_factory=lambda: ["set", "get"], min_length=1)


class WrkWorkloadSpec(_Strict):
    """wrk against ``url`` (loopback), or against a small static HTTP server the study starts."""

    kind: Literal["wrk"]
    url: str | None = None
    threads: int = Field(default=1, ge=1, le=64)
    connections: int = Field(default=4, ge=1, le=10_000)
    file_bytes: int = Field(default=1024, ge=1, le=64 * 1024 * 1024)


class Iperf3WorkloadSpec(_Strict):
    """iperf3 client against an ``iperf3 -s`` the study starts on 127.0.0.1."""

    kind: Literal["iperf3"]
    streams: int = Field(default=1, ge=1, le=128)


class StressNgWorkloadSpec(_Strict):
    """One stress-ng stressor; bogo-ops/s is the throughput."""

    kind: Literal["stress-ng"]
    stressor: str = "cpu"
    workers: int = Field(default=1, ge=1, le=256)


class PassiveWorkloadSpec(_Strict):
    """Observe something already running: pids or a cgroup, an HTTP probe, a Prometheus scrape."""

    kind: Literal["passive"]
    pids: list[int] | None = None
    cgroup: str | None = None
    probe_url: str | None = None
    probe_interval_s: float = Field(default=0.1, ge=0, le=60)
    probe_timeout_s: float = Field(default=2.0, gt=0, le=60)
    scrape_url: str | None = None
    throughput_counter: str | None = None
    error_counter: str | None = None
    scrape_timeout_s: float = Field(default=5.0, gt=0, le=60)
    sample_interval_s: float = Field(default=0.5, ge=0.1, le=10)


def _workload_kind(value: Any) -> str:
    """The tag of a workload: its ``kind``, ``oltp`` when omitted (specs written before other kinds existed)."""
    if isinstance(value, dict):
        return str(value.get("kind", "oltp"))
    return str(getattr(value, "kind", "oltp"))


AnyWorkloadSpec = Annotated[
    Annotated[WorkloadSpec, Tag("oltp")]
    | Annotated[FioWorkloadSpec, Tag("fio")]
    | Annotated[PgbenchWorkloadSpec, Tag("pgbench")]
    | Annotated[RedisBenchmarkWorkloadSpec, Tag("redis-benchmark")]
    | Annotated[WrkWorkloadSpec, Tag("wrk")]
    | Annotated[Iperf3WorkloadSpec, Tag("iperf3")]
    | Annotated[StressNgWorkloadSpec, Tag("stress-ng")]
    | Annotated[PassiveWorkloadSpec, Tag("passive")],
    Discriminator(_workload_kind),
]
WORKLOAD_SPECS: dict[str, type[BaseModel]] = {
    m.model_fields["kind"].annotation.__args__[0]: m  # type: ignore[union-attr]  # - kind is a Literal here
    for m in (WorkloadSpec, FioWorkloadSpec, PgbenchWorkloadSpec, RedisBenchmarkWorkloadSpec, WrkWorkloadSpec,
              Iperf3WorkloadSpec, StressNgWorkloadSpec, PassiveWorkloadSpec)
}


class CostSpec(_Strict):
    """Unit prices from the packaged OpenCost catalog (see collectors/data/README.md).

    ``memory_gib`` is the memory priced when the study does not tune
    ``sizing.memory_gib`` (then the tuned limit is priced).
    """

    profile: str = "opencost-builtin-default"
    pricing_model: Literal["on_demand", "spot"] = "on_demand"
    memory_gib: float = Field(default=1.0, ge=0, le=65536)


class SamplerSpec(_Strict):
    """``auto`` picks by the space and the budget; the others are Optuna's (``gp`` needs the ``gp`` extra)."""

    name: Literal["auto", "random", "tpe", "gp", "nsga2", "cmaes", "grid"] = "auto"
    seed: int | None = None


class ConvergenceSpec(_Strict):
    """Stop early: the hypervolume (several objectives) or the best value (one) has not improved
    by more than ``min_improvement`` (relative) for ``patience`` trials, or Optuna's terminator
    (``terminator: true``, one objective) says so. Without this section the state is tracked and
    reported, and the study runs its whole budget."""

    patience: int = Field(default=8, ge=1, le=1000)
    min_improvement: float = Field(default=0.01, ge=0, le=1)
    min_trials: int | None = Field(default=None, ge=1, le=10_000)
    terminator: bool = False


class NoiseSpec(_Strict):
    """Re-measure up to ``remeasure`` promising or duplicate configurations after the budget
    (each a trial of its own), until they have ``target_repeats`` measurements or their
    confidence interval is narrower than ``max_rel_ci``; the Pareto front and the choice then
    treat differences inside the noise as ties."""

    remeasure: int = Field(default=0, ge=0, le=100)
    target_repeats: int = Field(default=3, ge=2, le=50)
    max_rel_ci: float = Field(default=0.05, gt=0, le=1)
    confidence: float = Field(default=0.95, gt=0.5, lt=1)


class TrustRegionSpec(_Strict):
    """Safe gradual tuning: each trial moves every numeric knob by at most ``max_step`` from the
    current configuration (a fraction of its range, or ``{knob: absolute step}``) and changes at
    most ``max_categorical_changes`` categorical knobs; the region follows the improvements."""

    max_step: float | dict[str, float] = 0.1
    max_categorical_changes: int = Field(default=1, ge=0, le=100)


class WarmStartSpec(_Strict):
    """Enqueue the best configurations (the knee first, then the feasible front) of up to ``top``
    trials from earlier studies of the same target (same workload, same host), after the baseline.
    ``stock_profiles``: first try what each stock TuneD profile sets on the study's knobs, on top of the
    values found (:mod:`experiments.study.stock_start`; read from the ``tuned_profile_dirs`` setting)."""

    enabled: bool = True
    top: int = Field(default=3, ge=0, le=50)
    stock_profiles: bool = False


class ChooseSpec(_Strict):
    """Which trial the study exports: ``knee`` of the front, ``max-perf-under-budget``
    (``budget: {cost_usd_per_hour: 0.03}``), ``min-cost-under-sla`` (``sla: {latency_p95_ms:
    {max: 20}}``) or ``best`` (of ``target``)."""

    rule: Literal["knee", "max-perf-under-budget", "min-cost-under-sla", "best"] = "knee"
    budget: dict[str, float] = Field(default_factory=dict)
    sla: dict[str, ConstraintSpec] = Field(default_factory=dict)
    target: str | None = None


class JustifySpec(_Strict):
    """Before the study exports, keep only the changes whose effect is measured: the chosen configuration
    and, for each knob it changes, the same configuration with that knob put back, re-measured in
    ``rounds`` shuffled rounds (see :mod:`optimizer.justify`). A knob is kept when it makes an objective or
    an SLA metric better by at least ``min_effect_pct`` with an interval that excludes zero (chance
    ``alpha`` of keeping any one without effect); the others stay as found. ``rounds: 0`` ships the choice as
    it is (also the ``study_justify`` setting, off)."""

    rounds: int = Field(default=3, ge=0, le=10)
    alpha: float = Field(default=0.05, gt=0, le=0.5)
    min_effect_pct: float = Field(default=1.0, ge=0, le=100)


class ProfileSpec(_Strict):
    """Profile the tuned processes (the workload's Python processes, with their children) with py-spy in
    every trial's measurement window: each trial's flamegraph and its diff against the baseline trial go to
    MLflow, and the study's summary names the hotspots that changed most between the baseline and the
    chosen configuration. ``mode: wall`` includes idle threads (off-CPU time); ``native`` adds C frames."""

    mode: Literal["cpu", "wall"] = "cpu"
    rate_hz: float = Field(default=100.0, ge=5, le=100)
    native: bool = False
    noise_pct: float = Field(default=0.5, ge=0, le=20)


class TargetSpec(_Strict):
    """What the study makes and owns and what its knobs act on (the workload is what is measured).
    ``neighbour``: a stress-ng batch job next to the service, its process- and cgroup-scoped knobs act on it
    (see :mod:`experiments.study.target_neighbour`); ``loop``: a loop device of the study's own, the
    ``block.@target.*`` knobs (see :mod:`experiments.study.target_loop`); ``netns``: two network namespaces
    joined by a veth pair, the ``net.*`` and ``nic.@target.*`` knobs act inside them (see
    :mod:`experiments.study.target_netns`); ``memory``: the workload's cgroup with its memory (page cache
    included) limited for the whole study (see :mod:`experiments.study.target_memory`); ``disk``: the disk
    under fio's file, the ``block.@target.*`` knobs (see :mod:`experiments.study.target_disk`)."""

    neighbour: NeighbourSpec | None = None
    loop: LoopSpec | None = None
    netns: NetnsTargetSpec | None = None
    memory: MemoryTargetSpec | None = None
    disk: DiskSpec | None = None


class StudySpec(_Strict):
    """What to tune, how to measure it and what counts as better."""

    name: Annotated[str, Field(pattern=NAME_RE)]
    description: str = ""
    workload: AnyWorkloadSpec = WorkloadSpec()
    target: TargetSpec | None = None
    knobs: dict[str, KnobSpec] = Field(min_length=1)
    objectives: dict[str, Literal["maximize", "minimize"]] = Field(min_length=1, max_length=4)
    constraints: dict[str, ConstraintSpec] = Field(default_factory=dict)
    trial: TrialSpec = TrialSpec()
    budget: BudgetSpec = BudgetSpec()
    cost: CostSpec = CostSpec()
    sampler: SamplerSpec = SamplerSpec()
    convergence: ConvergenceSpec | None = None
    noise: NoiseSpec = NoiseSpec()
    trust_region: TrustRegionSpec | None = None
    warm_start: WarmStartSpec = WarmStartSpec()
    choose: ChooseSpec = ChooseSpec()
    justify: JustifySpec = JustifySpec()
    profile: ProfileSpec | None = None

    @field_validator("knobs")
    @classmethod
    def _knob_names_are_plain(cls, v: dict[str, KnobSpec]) -> dict[str, KnobSpec]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9_.<>@-]{1,128}", name) or ".." in name:
                raise ValueError(f"knob name {name!r} has characters a knob name cannot have")
        return v


_WORKLOAD_UNION = object()  # marker while walking an error location through the workload union


def _format_errors(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors():
        parts = [str(p) for p in e["loc"]]
        if len(parts) >= 2 and parts[0] == "workload" and parts[1] in WORKLOAD_SPECS:
            parts.pop(1)  # the union's tag: "workload.fio.rw" reads "workload.rw"
        loc = ".".join(parts) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            model: Any = StudySpec
            for p in parent:
                if model is _WORKLOAD_UNION and str(p) in WORKLOAD_SPECS:
                    model = WORKLOAD_SPECS[str(p)]
                    continue
                field = model.model_fields.get(str(p)) if hasattr(model, "model_fields") else None
                ann = getattr(field, "annotation", None)
                if str(p) == "workload" and model is StudySpec:
                    model = _WORKLOAD_UNION
                    continue
                models = [a for a in (ann, *get_args(ann)) if isinstance(a, type) and issubclass(a, BaseModel)]
                model = models[0] if models else KnobSpec
            allowed = ", ".join(model.model_fields) or "no field (an empty mapping: {})"
            msg = f"unknown field; allowed here: {allowed}"
        elif e["type"] == "union_tag_invalid":
            got = e["input"].get("kind") if isinstance(e["input"], dict) else e["input"]
            msg = f"unknown workload kind {got!r}; allowed: {', '.join(WORKLOAD_SPECS)}"
        elif e["type"] == "missing":
            msg = "required field is missing"
        out.append(f"{loc}: {msg}")
    return out


def parse_spec(data: Any, *, source: str = "<spec>") -> StudySpec:
    """Validate a decoded spec (a dict). Raises :class:`SpecError` listing every problem."""
    if not isinstance(data, dict):
        raise SpecError(source, [f"the spec must be a mapping of fields, got {type(data).__name__}"])
    try:
        return StudySpec.model_validate(data)
    except ValidationError as err:
        raise SpecError(source, _format_errors(err)) from None


def load_spec(path: str | Path) -> StudySpec:
    """Read a ``.yaml``/``.yml``/``.json`` spec file. Raises :class:`SpecError`."""
    p = Path(path)
    src = str(p)
    if p.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise SpecError(src, [f"unsupported file type {p.suffix or '(none)'!r}; use .yaml, .yml or .json"])
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(src, ["file not found"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError(src, [f"cannot read: {err}"]) from None
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise SpecError(src, [f"not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {err}"]) from None
    return parse_spec(data, source=src)
