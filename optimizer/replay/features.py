"""Features that carry knowledge: numbers derived from knob values that name instance types, sizes, families.

A table's knobs are text. When a knob's values name cloud instance types (``m5.2xlarge``, ``c4.large``,
``Standard_D4s_v3``), sizes only (``large``, ``2xlarge``) or families only (``c5``, ``r4``), each
configuration gets numeric figures -- vCPU, GiB, $/h, GiB per vCPU (the family class: c ~2, m ~4, r ~8),
generation -- so a model can interpolate across sizes and families; a knob named like a node count
(``nodes``, ``workers``, ``instances``, ``count``) with integer values multiplies them into figures of
the whole configuration (total vCPU, total GiB, price per hour of the cluster).

The figures come from a catalog passed in as data (``catalog``: instance type name -> an object with
``vcpus``, ``memory_gib``, ``usd_per_hour``, e.g. ``collectors.pricing.load_instance_types()``); a type not
in it is estimated from its name (the size word gives the vCPU, the class letter the GiB per vCPU, the
price is the catalog's median for the same class and size, else a per-vCPU + per-GiB unit price) and
marked ``estimated``. Without a catalog every figure is estimated from the name and the unit prices below.

A table whose knobs name nothing known (e.g. anonymised families ``A``/``B``/``C``) gets no features
(:func:`derive_features` returns None): a count knob alone adds nothing, it is already a number.

Pure: no I/O, plain data in and out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

__all__ = [
    "CLASS_GIB_PER_VCPU",
    "USD_PER_GIB_HOUR",
    "USD_PER_VCPU_HOUR",
    "CatalogEntry",
    "ConfigFeatures",
    "InstanceSpec",
    "derive_features",
    "family_spec",
    "instance_spec",
    "is_count_knob",
    "parse_family",
    "parse_instance",
    "size_units",
]

#: GiB of memory per vCPU by the class letter of a family (AWS letters; Azure series in upper case in names,
#: matched case-insensitively through AZURE_CLASS below)
CLASS_GIB_PER_VCPU = {"c": 2.0, "m": 4.0, "r": 8.0, "t": 4.0, "i": 8.0, "d": 8.0, "h": 4.0, "z": 8.0,
                      "x": 16.0, "a": 2.0}
#: Azure series letter -> the AWS-like class letter with the same GiB per vCPU
AZURE_CLASS = {"d": "m", "f": "c", "e": "r", "b": "t", "l": "i", "m": "x", "a": "c"}
#: unit prices for a type neither in the catalog nor like one in it: a least-squares fit of the AWS
#: us-east-1 catalog's c/m/r families (shared/datasets/pricing/README.md: ~$0.035 per vCPU-h, $0.0035 per GiB-h)
USD_PER_VCPU_HOUR = 0.035
USD_PER_GIB_HOUR = 0.0035
#: vCPU-equivalents of a size word (t-class nano..medium are 2 vCPU with 0.5..4 GiB: these units are GiB / 4)
_SIZE_UNITS = {"nano": 0.125, "micro": 0.25, "small": 0.5, "medium": 1.0, "large": 2.0, "xlarge": 4.0}
_METAL_VCPU = 96.0
_COUNT_NAME = re.compile(r"(node|count|instance|worker|server|machine|vms?$|executor|replica|cluster_?size|num)",
                         re.IGNORECASE)
_SIZE = re.compile(r"^(nano|micro|small|medium|large|xlarge|(\d+)xlarge|metal(?:-(\d+)xl)?)$")
_FAMILY = re.compile(r"^([a-z])(\d+)([a-z]*(?:-flex)?)$")
_AZURE = re.compile(r"^(?:standard_)?([a-z])(\d+)([a-z]*)(?:_v(\d+))?$")


class CatalogEntry(Protocol):
    """What the features read of a catalog row (``collectors.pricing.InstanceType`` satisfies it)."""

    @property
    def vcpus(self) -> int: ...
    @property
    def memory_gib(self) -> float: ...
    @property
    def usd_per_hour(self) -> float: ...


@dataclass(frozen=True)
class InstanceSpec:
    """Figures of one instance type (or family, or size): None where unknown; ``estimated`` when any
    figure is not the catalog's."""

    cls: str | None  # class letter: c compute, m general, r memory, i/d storage, t burstable, ...
    generation: float | None
    vcpu: float | None
    memory_gib: float | None
    usd_per_hour: float | None
    estimated: bool


def size_units(word: str) -> float | None:
    """vCPU-equivalents of a size word (``large`` 2, ``xlarge`` 4, ``8xlarge`` 32, ``metal`` 96), None otherwise."""
    m = _SIZE.match(word.strip().lower())
    if m is None:
        return None
    if m.group(2):
        return 4.0 * float(m.group(2))
    if m.group(1).startswith("metal"):
        return 4.0 * float(m.group(3)) if m.group(3) else _METAL_VCPU
    return _SIZE_UNITS[m.group(1)]


def parse_family(text: str) -> tuple[str, float, str] | None:
    """``c5`` -> (``c``, 5, ``""``), ``r5d`` -> (``r``, 5, ``d``); None when not an AWS-like family of a known class."""
    m = _FAMILY.match(text.strip().lower())
    if m is None or m.group(1) not in CLASS_GIB_PER_VCPU:
        return None
    return m.group(1), float(m.group(2)), m.group(3)


def parse_instance(text: str) -> tuple[str, str] | None:
    """``m5.2xlarge`` -> (``m5``, ``2xlarge``); None when not ``FAMILY.SIZE`` with a known family and size word."""
    fam, dot, size = text.strip().lower().partition(".")
    if not dot or parse_family(fam) is None or size_units(size) is None:
        return None
    return fam, size


def _azure(text: str) -> InstanceSpec | None:
    """``Standard_D4s_v3`` -> 4 vCPU of the general class (figures estimated); None otherwise."""
    t = text.strip().lower()
    m = _AZURE.match(t)
    if m is None or not (t.startswith("standard_") or m.group(4)) or m.group(1) not in AZURE_CLASS:
        return None
    cls = AZURE_CLASS[m.group(1)]
    vcpu = float(m.group(2))
    if vcpu <= 0:
        return None
    gib = vcpu * (28.0 if m.group(1) == "m" else CLASS_GIB_PER_VCPU[cls])
    gen = float(m.group(4)) if m.group(4) else 1.0
    return InstanceSpec(cls, gen, vcpu, gib, vcpu * USD_PER_VCPU_HOUR + gib * USD_PER_GIB_HOUR, True)


@dataclass
class _CatalogIndex:
    """The catalog by lower-case name, and the median price per (class, size) for estimates."""

    by_name: dict[str, CatalogEntry] = field(default_factory=dict)
    median_price: dict[tuple[str, str], float] = field(default_factory=dict)
    metal_vcpu: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, catalog: Mapping[str, CatalogEntry] | None) -> _CatalogIndex:
        idx = cls()
        prices: dict[tuple[str, str], list[float]] = {}
        for name, e in (catalog or {}).items():
            key = name.strip().lower()
            idx.by_name[key] = e
            p = parse_instance(key)
            if p is None:
                continue
            fam, size = p
            prices.setdefault((fam[0], size), []).append(float(e.usd_per_hour))
            if size == "metal":
                idx.metal_vcpu[fam] = float(e.vcpus)
        idx.median_price = {k: float(np.median(v)) for k, v in prices.items()}
        return idx


def instance_spec(name: str, catalog: Mapping[str, CatalogEntry] | None = None, *,
                  _index: _CatalogIndex | None = None) -> InstanceSpec | None:
    """Figures of instance type ``name``: the catalog's when it has the type, else estimated from the name.

    Estimated: vCPU from the size word (``xlarge`` 4, ``Nxlarge`` 4N; t-class nano..medium 2), GiB =
    vCPU x the class's GiB per vCPU (:data:`CLASS_GIB_PER_VCPU`; t-class by size), price = the catalog's
    median for the same class letter and size, else vCPU x :data:`USD_PER_VCPU_HOUR` + GiB x
    :data:`USD_PER_GIB_HOUR`. None when the name is not an instance type.
    """
    idx = _index or _CatalogIndex.of(catalog)
    key = name.strip().lower()
    p = parse_instance(key)
    if p is None:
        return _azure(name)
    fam, size = p
    cls, gen, _ = parse_family(fam) or ("", 0.0, "")
    e = idx.by_name.get(key)
    if e is not None:
        return InstanceSpec(cls, gen, float(e.vcpus), float(e.memory_gib), float(e.usd_per_hour), False)
    units = size_units(size) or 2.0
    if size == "metal":
        units = idx.metal_vcpu.get(fam, units)
    vcpu = max(units, 2.0) if cls == "t" else max(units, 1.0)
    gib = units * 4.0 if cls == "t" else vcpu * CLASS_GIB_PER_VCPU[cls]
    price = idx.median_price.get((cls, size), vcpu * USD_PER_VCPU_HOUR + gib * USD_PER_GIB_HOUR)
    return InstanceSpec(cls, gen, vcpu, gib, price, True)


def family_spec(name: str, catalog: Mapping[str, CatalogEntry] | None = None, *,
                _index: _CatalogIndex | None = None) -> InstanceSpec | None:
    """Figures of a family (``c5``, ``r4``): class, generation, GiB per vCPU (as ``memory_gib`` at 1 vCPU) and
    $/vCPU-h (as ``usd_per_hour`` at 1 vCPU; the catalog's ``FAMILY.large`` / 2 when it has it). None otherwise."""
    p = parse_family(name)
    if p is None:
        return None
    cls, gen, _ = p
    idx = _index or _CatalogIndex.of(catalog)
    spec = instance_spec(f"{name.strip().lower()}.large", _index=idx)
    assert spec is not None and spec.vcpu and spec.memory_gib and spec.usd_per_hour
    return InstanceSpec(cls, gen, 1.0, spec.memory_gib / spec.vcpu, spec.usd_per_hour / spec.vcpu, spec.estimated)


def is_count_knob(name: str, values: Sequence[str]) -> bool:
    """A knob named like a node count (nodes, workers, instances, count, ...) whose values are positive integers."""
    if not _COUNT_NAME.search(name) or not values:
        return False
    try:
        nums = [float(v) for v in values]
    except ValueError:
        return False
    return all(x > 0 and float(x).is_integer() for x in nums)


def _role(name: str, values: list[str]) -> str | None:
    """What a knob's distinct non-blank values name: instance, size, family, count, or None."""
    if not values:
        return None
    if all(parse_instance(v) is not None or _azure(v) is not None for v in values):
        return "instance"
    if all(size_units(v) is not None for v in values):
        return "size"
    if all(parse_family(v) is not None for v in values):
        return "family"
    if is_count_knob(name, values):
        return "count"
    return None


@dataclass
class ConfigFeatures:
    """Numeric features per configuration (rows in the order given), raw (not scaled).

    ``names`` label the columns of ``values``; ``log`` says which columns span powers of two (to be
    log-scaled). ``price_total`` is the $/h of the whole configuration (price x nodes), NaN where
    unknown; ``estimated`` is true where that price is not the catalog's. ``roles`` maps each knob used
    to what it named (instance, size, family, count).
    """

    names: list[str]
    values: np.ndarray
    log: list[bool]
    price_total: np.ndarray
    estimated: np.ndarray
    roles: dict[str, str]

    def scaled(self) -> np.ndarray:
        """The features scaled to [0, 1] per column (log2 where :attr:`log`), unknown cells at the column's
        mean, constant and repeated columns dropped: extra model inputs."""
        cols: list[np.ndarray] = []
        for j, lg in enumerate(self.log):
            v = self.values[:, j].astype(float)
            if lg:
                v = np.where(v > 0, np.log2(np.where(v > 0, v, 1.0)), np.nan)
            ok = ~np.isnan(v)
            if not ok.any():
                continue
            lo, hi = float(v[ok].min()), float(v[ok].max())
            if hi - lo < 1e-12:
                continue
            u = (v - lo) / (hi - lo)
            u[~ok] = float(u[ok].mean())
            if any(np.allclose(u, c) for c in cols):
                continue
            cols.append(u)
        return np.column_stack(cols) if cols else np.zeros((len(self.values), 0))


def _spec_of(c: Sequence[str], roles: dict[int, str], idx: _CatalogIndex) -> tuple[InstanceSpec | None, float]:
    """One configuration's instance figures (from its instance, family + size, size or family knobs) and node count."""
    cells = {role: c[j] for j, role in roles.items() if c[j] != ""}
    nodes = float(cells["count"]) if "count" in cells else 1.0
    if "instance" in cells:
        return instance_spec(cells["instance"], _index=idx), nodes
    if "family" in cells and "size" in cells:
        return instance_spec(f"{cells['family']}.{cells['size']}", _index=idx), nodes
    if "family" in cells:
        return family_spec(cells["family"], _index=idx), nodes
    if "size" in cells:
        u = size_units(cells["size"])
        return InstanceSpec(None, None, u, None, None, True), nodes
    return None, nodes


def derive_features(knobs: Sequence[str], configs: Sequence[Sequence[str]],
                    catalog: Mapping[str, CatalogEntry] | None = None) -> ConfigFeatures | None:
    """Numeric features of ``configs`` (tuples of knob cells, ``""`` = not applicable) from knobs that name
    instance types, sizes or families (and a node-count knob); None when no knob names any.

    Columns: ``vcpu``, ``gib_per_vcpu``, ``generation``, ``usd_per_vcpu_hour`` (family-only knobs),
    ``total_vcpu``, ``total_gib``, ``price_total`` (= price x nodes) -- those that are known somewhere.
    """
    roles: dict[int, str] = {}
    for j, k in enumerate(knobs):
        vals = sorted({c[j] for c in configs if c[j] != ""})
        role = _role(k, vals)
        if role is not None and role not in roles.values():
            roles[j] = role
    if not set(roles.values()) & {"instance", "size", "family"}:
        return None
    idx = _CatalogIndex.of(catalog)
    names = ["vcpu", "gib_per_vcpu", "generation", "usd_per_vcpu_hour", "total_vcpu", "total_gib", "price_total"]
    log = [True, True, False, True, True, True, True]
    V = np.full((len(configs), len(names)), np.nan)
    est = np.ones(len(configs), dtype=bool)
    family_only = set(roles.values()) & {"instance", "size"} == set()
    for r, c in enumerate(configs):
        spec, nodes = _spec_of(c, roles, idx)
        if spec is None:
            continue
        est[r] = spec.estimated
        g = spec.generation if spec.generation is not None else math.nan
        if family_only:  # figures per vCPU of the family
            V[r, 1:4] = [spec.memory_gib or math.nan, g, spec.usd_per_hour or math.nan]
            continue
        vcpu = spec.vcpu or math.nan
        gib = spec.memory_gib if spec.memory_gib is not None else math.nan
        price = spec.usd_per_hour if spec.usd_per_hour is not None else math.nan
        V[r] = [vcpu, gib / vcpu, g, math.nan, vcpu * nodes, gib * nodes, price * nodes]
    keep = [j for j in range(len(names)) if not np.isnan(V[:, j]).all()]
    price_total = V[:, names.index("price_total")]
    return ConfigFeatures([names[j] for j in keep], V[:, keep], [log[j] for j in keep], price_total, est,
                          {knobs[j]: role for j, role in roles.items()})
