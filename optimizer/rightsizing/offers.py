"""From a recommendation to real offers: catalog instance types, purchase options, cgroup limits.

* :func:`match_offers` -- the cheapest catalog types that hold the recommended cores and GiB,
  priced under the purchase options the discount data support (:mod:`.discounts`), with the
  performance risk of each size, spot suitability and the saving against the current size.
* :func:`spot_suitability` -- may this target run on interruptible capacity?
* :func:`cgroup_limits` -- the same recommendation as cgroup values and systemd properties.

Plain data in and out: instance types are :class:`optimizer.instance.InstanceLike` (a catalog row
of ``collectors.pricing`` satisfies it), discounts :class:`.discounts.Discount`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from optimizer.instance import HOURS_PER_MONTH, InstanceLike
from optimizer.rightsizing.discounts import ON_DEMAND, Discount, option_discount, supported_options
from optimizer.rightsizing.model import Recommendation, UsageSeries
from optimizer.rightsizing.risk import risk_from_stats, size_risk

__all__ = [
    "BURSTABLE_BASELINE",
    "CgroupLimits",
    "Offer",
    "SpotSuitability",
    "cgroup_limits",
    "current_type",
    "family_of",
    "is_burstable",
    "match_offers",
    "price_offer",
    "resolve_arch",
    "spot_suitability",
]

#: share of a burstable type's vCPUs its credits sustain (t3.small/medium earn 20 % per vCPU): a
#: median load above it would exhaust the credits, so such a type does not fit a steady load
BURSTABLE_BASELINE = 0.2
PAGE = 4096
_EPS = 1e-9


def family_of(t: InstanceLike) -> str:
    """The type's family (``family`` when the row has one, else the name before the dot)."""
    fam = getattr(t, "family", None)
    return str(fam) if fam else t.name.split(".")[0]


def is_burstable(t: InstanceLike) -> bool:
    """True for a burstable (CPU-credit) type: the ``t`` families (t3, t3a, t4g, ...)."""
    fam = family_of(t)
    return len(fam) >= 2 and fam[0] == "t" and fam[1].isdigit()


@dataclass(frozen=True)
class Offer:
    """One instance type under one purchase option, priced per hour and per month (730 h).

    ``discount_pct`` is below the on-demand price and ``discount_basis`` says where it comes from
    (a derived or observed figure, never an advertised maximum). ``risk`` is the performance risk
    of this size (0..4). ``savings_usd_per_month`` is against the current size on demand (None
    when the current size is unknown). ``note`` flags what a reader must know (burstable).
    """

    instance_type: str
    family: str
    vcpus: int
    memory_gib: float
    arch: str
    purchase_option: str
    usd_per_hour: float
    usd_per_month: float
    discount_pct: float
    discount_basis: str
    risk: float
    spot_suitable: bool
    spot_reason: str
    savings_usd_per_month: float | None = None
    term: str = "none"
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SpotSuitability:
    """May a target run on interruptible (spot) capacity, and why. The statistics behind it too."""

    suitable: bool
    reason: str
    idle_share: float = 0.0
    memory_floor_share: float = 0.0
    cpu_cv: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: shortest history to judge a target's shape
SPOT_MIN_HOURS = 24.0
#: a sample is idle below this share of the p95 CPU; a target is batch-like with this share idle
IDLE_CPU = 0.05
IDLE_SHARE = 0.2
#: memory whose level during idle samples stays above this share of its p95 is held state
MEM_HELD = 0.5


def spot_suitability(usage: UsageSeries) -> SpotSuitability:
    """Judge spot suitability from the shape of the history.

    Suitable only when the work comes in jobs: at least :data:`IDLE_SHARE` of the samples are idle
    (CPU below :data:`IDLE_CPU` of its p95) and memory is released while idle (below
    :data:`MEM_HELD` of its p95), so an interruption loses at most the job in flight. A target that
    runs continuously, or holds its memory while idle (a cache or database), is not; neither is a
    history shorter than :data:`SPOT_MIN_HOURS`. OOM kills do not matter here.
    """
    if len(usage) < 3 or usage.span_hours < SPOT_MIN_HOURS:
        return SpotSuitability(False, f"{usage.span_hours:.1f} h of history is too short to judge the shape "
                                      f"(needs {SPOT_MIN_HOURS:g} h); not suitable until known")
    cpu, mem = usage.cpu_cores, usage.mem_gib
    p95 = float(np.percentile(cpu, 95))
    mean = float(cpu.mean())
    cv = float(cpu.std() / mean) if mean > 0 else 0.0
    idle = cpu <= IDLE_CPU * p95 if p95 > 0 else np.ones(len(cpu), dtype=bool)
    idle_share = float(idle.mean())
    mem_p95 = float(np.percentile(mem, 95))
    floor = float(np.median(mem[idle]) / mem_p95) if idle.any() and mem_p95 > 0 else 1.0
    if idle_share < IDLE_SHARE:
        why = "steady" if cv < 0.25 else "variable"
        return SpotSuitability(False, f"runs continuously ({why} CPU, {idle_share:.0%} of samples idle): a "
                                      "long-running service, which a spot interruption would stop",
                               idle_share, floor, cv)
    if floor > MEM_HELD:
        return SpotSuitability(False, f"keeps {floor:.0%} of its memory while idle: it holds state (a cache "
                                      "or database) that an interruption would lose", idle_share, floor, cv)
    return SpotSuitability(True, f"works in jobs ({idle_share:.0%} of samples idle) and releases its memory "
                                 f"between them ({floor:.0%} kept): an interruption loses only the job in flight",
                           idle_share, floor, cv)


def price_offer(t: InstanceLike, option: str, discounts: Sequence[Discount], *, risk: float,
                spot: SpotSuitability, current_usd_per_month: float | None = None, note: str = "") -> Offer:
    """Price type ``t`` under ``option`` (see :func:`.discounts.option_discount`).

    Raises:
        ValueError: the data hold no derived or observed figure for ``option``.
    """
    op = option_discount(discounts, option, t.name)
    hourly = t.usd_per_hour * (1.0 - op.pct / 100.0)
    monthly = hourly * HOURS_PER_MONTH
    return Offer(
        instance_type=t.name, family=family_of(t), vcpus=t.vcpus, memory_gib=t.memory_gib, arch=t.arch,
        purchase_option=option, usd_per_hour=hourly, usd_per_month=monthly, discount_pct=op.pct,
        discount_basis=op.basis, risk=risk, spot_suitable=spot.suitable, spot_reason=spot.reason,
        savings_usd_per_month=None if current_usd_per_month is None else current_usd_per_month - monthly,
        term=op.term, note=note,
    )


def current_type(types: Iterable[InstanceLike], current: str | InstanceLike | tuple[float, float],
                 *, arch: str | None = None) -> InstanceLike:
    """The current size as a catalog type: by name, as given, or the cheapest type holding (cores, GiB).

    A size is priced at the cheapest non-burstable type of ``arch`` (any when None) that holds it.

    Raises:
        ValueError: an unknown type name, or no type holds the given size.
    """
    pool = list(types)
    if isinstance(current, str):
        for t in pool:
            if t.name == current:
                return t
        raise ValueError(f"unknown instance type {current!r}; the catalog has {len(pool)} types "
                         f"(e.g. {', '.join(sorted(t.name for t in pool)[:3])})")
    if isinstance(current, tuple):
        cores, gib = current
        fits = [t for t in pool if t.vcpus >= cores - _EPS and t.memory_gib >= gib - _EPS
                and (arch is None or t.arch == arch) and not is_burstable(t)]
        if not fits:
            raise ValueError(f"no instance type holds the current size {cores:g} vCPUs / {gib:g} GiB")
        return min(fits, key=lambda t: (t.usd_per_hour, t.vcpus, t.memory_gib, t.name))
    return current


def cheapest_holding(types: Iterable[InstanceLike], cores: float, gib: float, *,
                     arch: str | None = "x86_64") -> InstanceLike | None:
    """The cheapest non-burstable type of ``arch`` holding ``cores`` and ``gib``; None when none is large enough.

    How a size is priced as an instance type in a plan: x86_64 by default, since moving to arm64 changes
    the binaries too (``arch=None`` allows any).
    """
    try:
        return current_type(types, (cores, gib), arch=arch)
    except ValueError:
        return None


def resolve_arch(arch: str | None, current: object, cur: InstanceLike | None) -> str | None:
    """The architecture to match: ``arch``; None (any) for ``"any"``; by default the current type's
    when ``current`` names a type (a move should not change the binaries' architecture unasked)."""
    if arch == "any":
        return None
    if arch is None and cur is not None and not isinstance(current, tuple):
        return cur.arch
    return arch


def _fits(t: InstanceLike, cores: float, gib: float, arch: str | None) -> bool:
    return t.vcpus >= cores - _EPS and t.memory_gib >= gib - _EPS and (arch is None or t.arch == arch)


def match_offers(
    rec: Recommendation,
    types: Iterable[InstanceLike],
    discounts: Sequence[Discount],
    *,
    current: str | InstanceLike | tuple[float, float] | None = None,
    arch: str | None = None,
    limit: int = 5,
    options: Sequence[str] = (ON_DEMAND,),
    usage: UsageSeries | None = None,
) -> list[Offer]:
    """The cheapest offers whose type holds the recommendation, cheapest first.

    A type fits when its vCPUs >= ``rec.cpu.target`` and its memory >= ``rec.memory.target`` and
    its ``arch`` is ``arch`` (default: the current type's when ``current`` names a type, else any;
    ``"any"``: any). A burstable type is left out when the median CPU (``rec.cpu.observed
    ["p50"]``) exceeds :data:`BURSTABLE_BASELINE` of its vCPUs (its credits would run out), else it
    is kept with a note. Each fitting type is priced under each of ``options``; ties go to fewer
    vCPUs, less memory, then the name. The risk is :func:`.risk.size_risk` over ``usage`` when
    given, else estimated from the recommendation's percentiles; spot suitability needs ``usage``
    (without it: not suitable, "unknown"). ``current`` (a type name, a type, or a (cores, GiB) size
    priced at the cheapest type holding it) gives each offer's saving against its on-demand price.

    Raises:
        ValueError: ``limit`` < 1, an unknown option or current type.
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    allowed = supported_options(discounts)
    for option in options:
        if option not in allowed:
            raise ValueError(f"no derived or observed discount for purchase option {option!r}; "
                             f"allowed: {', '.join(allowed)}")
    pool = list(types)
    cores, gib = rec.cpu.target, rec.memory.target
    cur = None if current is None else current_type(pool, current, arch=None if arch == "any" else arch)
    cur_month = None if cur is None else cur.usd_per_hour * HOURS_PER_MONTH
    arch = resolve_arch(arch, current, cur)
    spot = spot_suitability(usage) if usage is not None else SpotSuitability(
        False, "unknown: no usage history was given to judge interruptibility")
    median = float(rec.cpu.observed.get("p50", 0.0))
    offers: list[Offer] = []
    for t in pool:
        if not _fits(t, cores, gib, arch):
            continue
        note = ""
        if is_burstable(t):
            if median > BURSTABLE_BASELINE * t.vcpus:
                continue
            note = "burstable: a load above its CPU-credit baseline for long costs extra or is slowed"
        for option in options:
            offers.append(price_offer(t, option, discounts, risk=0.0, spot=spot,
                                      current_usd_per_month=cur_month, note=note))
    offers.sort(key=lambda o: (o.usd_per_month, o.vcpus, o.memory_gib, o.instance_type, o.purchase_option))
    # the risk of a size only for the offers returned (it reads the whole history)
    mem_stats = _mem_stats(rec.memory.observed)
    risks: dict[tuple[int, float], float] = {}
    out = []
    for o in offers[:limit]:
        key = (o.vcpus, o.memory_gib)
        if key not in risks:
            risks[key] = (size_risk(usage, o.vcpus, o.memory_gib) if usage is not None
                          else risk_from_stats(rec.cpu.observed, mem_stats, o.vcpus, o.memory_gib))
        out.append(replace(o, risk=risks[key]))
    return out


def _mem_stats(observed: Mapping[str, float]) -> dict[str, float]:
    out = dict(observed)
    if "peak" in out:
        out["max"] = max(out.get("max", 0.0), out["peak"])
    return out


@dataclass(frozen=True)
class CgroupLimits:
    """A recommendation as cgroup values (v1 and v2) and systemd resource-control properties.

    ``cpu_quota_us`` per ``cpu_period_us`` (v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``, v2
    ``cpu.max``); ``memory_max_bytes`` (v1 ``memory.limit_in_bytes``, v2 ``memory.max``), rounded up
    to a page; ``allowed_cpus`` a CPU list (``cpuset.cpus``); ``systemd``: ``CPUQuota`` ("240%"),
    ``MemoryMax`` (bytes), ``AllowedCPUs``. ``notes`` says what was capped.
    """

    cpu_quota_us: int
    cpu_period_us: int
    memory_max_bytes: int
    allowed_cpus: str
    systemd: dict[str, str | int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def cpu_max(self) -> str:
        """The cgroup v2 ``cpu.max`` line."""
        return f"{self.cpu_quota_us} {self.cpu_period_us}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["cpu_max"] = self.cpu_max
        d["notes"] = list(self.notes)
        return d


def _ceil(x: float) -> int:
    """Ceiling that ignores float noise (2.4 * 100 is 240, not 241)."""
    return math.ceil(round(x, 6))


def cgroup_limits(rec: Recommendation, *, cpus_online: int, period_us: int = 100_000) -> CgroupLimits:
    """The cgroup and systemd values of ``rec``'s CPU and memory targets.

    The quota is the recommended cores x ``period_us`` (rounded up; at least 1000 us, the kernel's
    minimum); ``AllowedCPUs`` the first ceil(cores) CPUs, capped at ``cpus_online`` (and the quota
    with it, since a quota above the CPUs allowed cannot be used); memory rounded up to a 4 KiB page.

    Raises:
        ValueError: ``cpus_online`` < 1, ``period_us`` outside [1000, 1000000] (the kernel's bounds),
            or a target that is not > 0.
    """
    if cpus_online < 1:
        raise ValueError(f"cpus_online must be >= 1, got {cpus_online}")
    if not 1000 <= period_us <= 1_000_000:
        raise ValueError(f"period_us must be in [1000, 1000000] (the kernel's bounds), got {period_us}")
    cores, gib = rec.cpu.target, rec.memory.target
    if not (cores > 0 and gib > 0 and math.isfinite(cores) and math.isfinite(gib)):
        raise ValueError(f"{rec.target}: the targets must be > 0, got {cores} cores and {gib} GiB")
    notes: list[str] = []
    n = _ceil(cores)
    if n > cpus_online:
        notes.append(f"{cores:g} cores recommended but {cpus_online} CPUs online: quota and CPU list capped")
        n, cores = cpus_online, float(cpus_online)
    quota = max(1000, _ceil(cores * period_us))
    percent = _ceil(cores * 100)
    mem_bytes = _ceil(gib * 2**30 / PAGE) * PAGE
    cpus = "0" if n == 1 else f"0-{n - 1}"
    return CgroupLimits(
        cpu_quota_us=quota, cpu_period_us=period_us, memory_max_bytes=mem_bytes, allowed_cpus=cpus,
        systemd={"CPUQuota": f"{percent}%", "MemoryMax": mem_bytes, "AllowedCPUs": cpus}, notes=tuple(notes),
    )
