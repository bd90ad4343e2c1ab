"""Problem families for the replay suite: generated tables an optimizer cannot be fitted to.

Pure: no I/O. Each generator returns a pandas frame in exactly the layout
``novatune replay`` reads (a group column, knob columns as strings with ``""`` =
not applicable, numeric objective columns, a ``feasible`` column) and the
:class:`Family` says how to replay it (group, knobs, objectives, feasible).
Every table is a deterministic function of its seed.

Families (see :func:`families`):

* ``multicloud`` - the development table; the caller reads it and hands the frame in
  (:func:`multicloud_family`).
* ``cloud-*`` - Scout/CherryPick-like data-analytics tables: instance type (``c5.xlarge``) or
  family + size (incl. older families not in the price catalog: c4/m4/r4, priced by
  :data:`OLD_FAMILIES`) + node count (+ disk type), 5-18 workloads, dense and sparse grids,
  ``runtime`` from a per-workload model (:func:`cloud_runtime`) and ``cost = $/h x nodes x runtime / 3600``.
* ``fn-*`` - standard test functions on grids of 3-6 knobs, numeric-heavy or categorical-heavy
  (labels in shuffled order), with plateaus, cliffs, infeasible regions and noise; groups are
  shifted/scaled instances of one function.

Splits: settings are chosen on the ``train`` families and reported on the ``held-out`` ones.
Each split holds every kind (the dev table sits in train; cloud instance-type and family+size
tables, dense and sparse; test functions numeric- and categorical-heavy, dense and sparse), so
a setting chosen on train has met every shape it is judged on, but never the same table.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from optimizer.replay.features import CatalogEntry

__all__ = [
    "OLD_FAMILIES",
    "SIZES",
    "InstanceFigures",
    "Family",
    "cloud_runtime",
    "families",
    "multicloud_family",
]

# size -> vCPUs of the c/m/r families (memory per vCPU: c 2 GiB, m 4, r 8)
SIZES: dict[str, int] = {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32}


@dataclass(frozen=True)
class InstanceFigures:
    """One instance type's figures where the catalog has none (the older families): the fields of a
    catalog row that :class:`optimizer.replay.features.CatalogEntry` reads, so both serve alike."""

    vcpus: int
    memory_gib: float
    usd_per_hour: float


# Older families that the price catalog does not hold: a documented estimate per vCPU-size unit
# (AWS us-east-1 list prices of 2019: c4.large 0.100, m4.large 0.100, r4.large 0.133 $/h, doubling
# per size; memory per vCPU c4 1.875 GiB, m4 4, r4 7.625).
OLD_FAMILIES: dict[str, tuple[float, float]] = {  # family -> (GiB per vCPU, $/h per 2 vCPUs)
    "c4": (1.875, 0.100),
    "m4": (4.0, 0.100),
    "r4": (7.625, 0.133),
}
_SPEED = {"4": 0.85, "5": 1.0, "6": 1.15}  # per-core speed by generation digit
_CLASS_SPEED = {"c": 1.1, "m": 1.0, "r": 1.0}  # compute-optimised cores run a little faster

Builder = Callable[[int], pd.DataFrame]


@dataclass(frozen=True)
class Family:
    """A problem family: how to build its table and how to replay it.

    ``build(seed)`` returns the frame; ``objectives`` are ``COLUMN:min|max`` texts, each
    replayed as its own single-objective replay.
    """

    name: str
    split: str  # "train" | "held-out"
    kind: str  # "dev" | "cloud" | "fn"
    build: Builder
    group: str
    knobs: list[str]
    objectives: list[str]
    feasible: str | None = "feasible"
    notes: str = ""
    tags: tuple[str, ...] = field(default=())


def _price(catalog: Mapping[str, CatalogEntry], family: str, size: str) -> CatalogEntry:
    """Catalog figures of ``family.size``; the older families from :data:`OLD_FAMILIES`.

    Raises:
        KeyError: a current family missing from the catalog.
    """
    if family in OLD_FAMILIES:
        per_cpu, per2 = OLD_FAMILIES[family]
        n = SIZES[size]
        return InstanceFigures(n, per_cpu * n, per2 * n / 2)
    return catalog[f"{family}.{size}"]


@dataclass(frozen=True)
class Workload:
    """Parameters of one data-analytics workload's runtime model (see :func:`cloud_runtime`)."""

    work: float  # core-seconds of parallel work
    serial: float  # Amdahl serial fraction
    working_set: float  # GiB needed per node to avoid spilling
    spill: float  # slowdown when below the working set
    oom: float  # fraction of the working set below which the run fails (out of memory)
    net: float  # seconds of coordination per extra node
    disk_share: float  # share of the time that is disk-bound
    startup: float  # seconds of fixed start-up


def _workload(rng: np.random.Generator) -> Workload:
    """A workload with wide, varied parameters."""
    return Workload(
        work=float(np.exp(rng.uniform(math.log(2e3), math.log(3e5)))),
        serial=float(rng.uniform(0.0, 0.35)),
        working_set=float(np.exp(rng.uniform(math.log(2.0), math.log(120.0)))),
        spill=float(rng.uniform(3.0, 10.0)),
        oom=float(rng.uniform(0.15, 0.5)),
        net=float(np.exp(rng.uniform(math.log(0.5), math.log(60.0)))),
        disk_share=float(rng.uniform(0.0, 0.6)),
        startup=float(rng.uniform(10.0, 120.0)),
    )


def cloud_runtime(w: Workload, *, family: str, vcpu: int, mem_gib: float, nodes: int,
                  disk: str = "ssd") -> tuple[float, bool]:
    """Noise-free runtime (s) of ``w`` on ``nodes`` x (``vcpu``, ``mem_gib``) and whether it runs.

    Parallel work scales with total vCPUs (Amdahl serial part on one core), a memory cliff
    (x ``spill``) below the working set per node, out of memory below ``oom`` x working set,
    coordination cost ``net`` per extra node, a disk-bound share 2.5x slower on ``hdd``.
    """
    speed = _SPEED.get(family[1:2], 1.0) * _CLASS_SPEED.get(family[:1], 1.0)
    compute = w.work * (w.serial + (1 - w.serial) / (vcpu * nodes)) / speed
    if mem_gib < w.working_set:
        compute *= w.spill
    disk_factor = 1.0 + w.disk_share * (1.5 if disk == "hdd" else 0.0)
    t = w.startup + compute * disk_factor + w.net * (nodes - 1)
    return t, mem_gib >= w.oom * w.working_set


def _cloud_frame(
    configs: list[dict[str, str]],
    spec: Callable[[dict[str, str]], tuple[str, CatalogEntry, int, str]],
    *, seed: int, workloads: int, sparse: bool,
) -> pd.DataFrame:
    """Rows of every workload x configuration (minus the missing ones when ``sparse``)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(workloads):
        w = _workload(rng)
        keep = np.ones(len(configs), dtype=bool)
        if sparse:
            miss = rng.uniform(0.3, 0.6)
            keep[rng.permutation(len(configs))[: int(round(miss * len(configs)))]] = False
        for c, ok in zip(configs, keep):
            if not ok:
                continue
            fam, ent, nodes, disk = spec(c)
            t, runs = cloud_runtime(w, family=fam, vcpu=ent.vcpus, mem_gib=ent.memory_gib, nodes=nodes, disk=disk)
            t *= float(np.exp(rng.normal(0.0, 0.05)))
            runs = runs and rng.uniform() > 0.02  # a few runs fail for no modelled reason
            cost = ent.usd_per_hour * nodes * t / 3600.0
            rows.append({"workload": f"wl{k:02d}", **c, "runtime": round(t, 3), "cost": round(cost, 6),
                         "price_per_hour": ent.usd_per_hour, "feasible": "true" if runs else "oom"})
    return pd.DataFrame(rows)


def _itype_builder(catalog: Mapping[str, CatalogEntry], fams: list[str], sizes: list[str], nodes: list[int],
                   workloads: int, sparse: bool) -> Builder:
    """An ``instance_type`` + ``nodes`` table builder."""
    configs = [{"instance_type": f"{f}.{s}", "nodes": str(n)} for f in fams for s in sizes for n in nodes]

    def spec(c: dict[str, str]) -> tuple[str, CatalogEntry, int, str]:
        fam, size = c["instance_type"].split(".")
        return fam, _price(catalog, fam, size), int(c["nodes"]), "ssd"

    return lambda seed: _cloud_frame(configs, spec, seed=seed, workloads=workloads, sparse=sparse)


def _famsize_builder(catalog: Mapping[str, CatalogEntry], fams: list[str], sizes: list[str], nodes: list[int],
                     workloads: int, sparse: bool, disks: list[str] | None = None) -> Builder:
    """A ``family`` + ``size`` + ``nodes`` (+ ``disk``) table builder."""
    configs = [{"family": f, "size": s, "nodes": str(n), **({"disk": d} if d else {})}
               for f in fams for s in sizes for n in nodes for d in (disks or [""])]

    def spec(c: dict[str, str]) -> tuple[str, CatalogEntry, int, str]:
        return c["family"], _price(catalog, c["family"], c["size"]), int(c["nodes"]), c.get("disk", "ssd")

    return lambda seed: _cloud_frame(configs, spec, seed=seed, workloads=workloads, sparse=sparse)


def _cloud_families(catalog: Mapping[str, CatalogEntry]) -> list[Family]:
    """The ``cloud-*`` families."""
    objs = ["runtime:min", "cost:min"]
    crm = ["c5", "m5", "r5"]
    old_new = ["c4", "m4", "r4", "c5", "m5", "r5"]
    sz3, sz4 = ["large", "xlarge", "2xlarge"], ["large", "xlarge", "2xlarge", "4xlarge"]
    it, fs = ["instance_type", "nodes"], ["family", "size", "nodes"]
    return [
        Family("cloud-itype-dense", "train", "cloud",
               _itype_builder(catalog, crm, sz4, [2, 3, 4, 6, 8], 8, False), "workload", it, objs),
        Family("cloud-famsize-sparse", "train", "cloud",
               _famsize_builder(catalog, old_new, sz3, [2, 4, 6, 8], 10, True), "workload", fs, objs),
        Family("cloud-itype-sparse", "held-out", "cloud",
               _itype_builder(catalog, crm + ["c6i", "m6i", "r6i"], sz4, [2, 4, 8, 12], 12, True),
               "workload", it, objs),
        Family("cloud-famsize-dense", "held-out", "cloud",
               _famsize_builder(catalog, old_new, sz3, [2, 3, 4, 6], 6, False), "workload", fs, objs),
        Family("cloud-famsize-disk-dense", "held-out", "cloud",
               _famsize_builder(catalog, ["c4", "m4", "c5", "m5", "r5"], sz3, [2, 4, 8], 5, False, ["hdd", "ssd"]),
               "workload", fs + ["disk"], objs),
    ]


# ------------------------------------------------------------------ test functions (domain scaled to [0, 1]^d)
def _branin(x: np.ndarray) -> np.ndarray:
    a, b = 15 * x[:, 0] - 5, 15 * x[:, 1]
    f = (b - 5.1 / (4 * np.pi**2) * a**2 + 5 / np.pi * a - 6) ** 2 + 10 * (1 - 1 / (8 * np.pi)) * np.cos(a) + 10
    return f + 5 * np.sum((x[:, 2:] - 0.5) ** 2, axis=1)  # extra knobs: a mild bowl


_H_A3 = np.array([[3, 10, 30], [0.1, 10, 35], [3, 10, 30], [0.1, 10, 35]])
_H_P3 = 1e-4 * np.array([[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]])
_H_A6 = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
_H_P6 = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]])
_H_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def _hartmann(a: np.ndarray, p: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def f(x: np.ndarray) -> np.ndarray:
        d = a.shape[1]
        inner = np.sum(a[None] * (x[:, None, :d] - p[None]) ** 2, axis=2)
        return -np.sum(_H_ALPHA[None] * np.exp(-inner), axis=1)
    return f


def _rosenbrock(x: np.ndarray) -> np.ndarray:
    z = 4 * x - 2
    return np.sum(100 * (z[:, 1:] - z[:, :-1] ** 2) ** 2 + (1 - z[:, :-1]) ** 2, axis=1)


def _ackley(x: np.ndarray) -> np.ndarray:
    z = 10 * x - 5
    d = z.shape[1]
    return (-20 * np.exp(-0.2 * np.sqrt(np.sum(z**2, axis=1) / d))
            - np.exp(np.sum(np.cos(2 * np.pi * z), axis=1) / d) + 20 + np.e)


def _styblinski(x: np.ndarray) -> np.ndarray:
    z = 10 * x - 5
    return 0.5 * np.sum(z**4 - 16 * z**2 + 5 * z, axis=1)


def _levy(x: np.ndarray) -> np.ndarray:
    w = 1 + (20 * x - 10 - 1) / 4
    head = np.sin(np.pi * w[:, 0]) ** 2
    mid = np.sum((w[:, :-1] - 1) ** 2 * (1 + 10 * np.sin(np.pi * w[:, :-1] + 1) ** 2), axis=1)
    tail = (w[:, -1] - 1) ** 2 * (1 + np.sin(2 * np.pi * w[:, -1]) ** 2)
    return head + mid + tail


FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "branin": _branin,
    "hartmann3": _hartmann(_H_A3, _H_P3),
    "hartmann6": _hartmann(_H_A6, _H_P6),
    "rosenbrock": _rosenbrock,
    "ackley": _ackley,
    "styblinski": _styblinski,
    "levy": _levy,
}

_LABELS = ["alder", "birch", "cedar", "dogwood", "elm", "fir", "ginkgo", "hazel", "ivy", "juniper"]


@dataclass(frozen=True)
class FnSpec:
    """A test-function family: function, grid, which knobs are categorical, and its hazards."""

    function: str
    dims: int
    levels: int
    categorical: tuple[int, ...] = ()  # knob indices shown as shuffled labels
    sparse: bool = False
    plateau: bool = False  # quantised output
    cliff: bool = False  # a step up beyond a threshold of knob 0
    infeasible: bool = False  # a constraint marks rows infeasible
    noise: float = 0.03  # lognormal sigma
    groups: int = 6


def _fn_group(spec: FnSpec, grid: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Objective (positive, min) and feasibility of one shifted/scaled instance on ``grid``."""
    shift = rng.uniform(-0.12, 0.12, size=spec.dims)
    f = FUNCTIONS[spec.function](np.clip(grid - shift, 0.0, 1.0))
    if spec.cliff:
        f = f + (np.ptp(f) * 0.5) * (grid[:, 0] > rng.uniform(0.55, 0.85))
    # positive objective whose 10 % band holds a realistic share (2-10 %) of the grid
    gap = f - f.min()
    y = gap + 10.0 * max(float(np.quantile(gap, rng.uniform(0.02, 0.10))), 1e-9)
    y = y * float(np.exp(rng.uniform(math.log(0.5), math.log(50.0))))
    if spec.plateau:
        step = 0.15 * y.min()  # flat terraces a little wider than the 10 % band
        y = y.min() + np.floor((y - y.min()) / step) * step
    y = y * np.exp(rng.normal(0.0, spec.noise, size=len(y)))
    feas = np.ones(len(y), dtype=bool)
    if spec.infeasible:
        w = rng.uniform(0.5, 1.5, size=spec.dims)
        score = grid @ w / w.sum()
        feas = score <= np.quantile(score, rng.uniform(0.75, 0.9))
    return y, feas


def _fn_builder(spec: FnSpec) -> Builder:
    """A builder of a test-function table (the grid, the labels and the instances from the seed)."""
    def build(seed: int) -> pd.DataFrame:
        rng = np.random.default_rng(seed)
        lv = np.linspace(0.0, 1.0, spec.levels)
        idx = np.stack(np.meshgrid(*[np.arange(spec.levels)] * spec.dims, indexing="ij"), -1).reshape(-1, spec.dims)
        grid = lv[idx]
        cols: dict[str, list[str]] = {}
        for j in range(spec.dims):
            if j in spec.categorical:
                labels = list(rng.permutation(_LABELS[: spec.levels]))
                cols[f"x{j}"] = [str(labels[i]) for i in idx[:, j]]
            else:
                lo, hi = sorted(rng.uniform(-100, 100, size=2).round(0))
                hi = hi if hi > lo else lo + 10
                vals = np.linspace(lo, hi, spec.levels)
                cols[f"x{j}"] = [f"{vals[i]:g}" for i in idx[:, j]]
        frames = []
        for g in range(spec.groups):
            y, feas = _fn_group(spec, grid, rng)
            keep = np.ones(len(y), dtype=bool)
            if spec.sparse:
                keep[rng.permutation(len(y))[: int(round(rng.uniform(0.3, 0.6) * len(y)))]] = False
            part = pd.DataFrame({"instance": f"i{g}", **cols, "value": y.round(6),
                                 "feasible": np.where(feas, "true", "false")})
            frames.append(part[keep])
        return pd.concat(frames, ignore_index=True)
    return build


_FN: list[tuple[str, str, FnSpec]] = [
    ("fn-hartmann3-numeric-dense", "train", FnSpec("hartmann3", 3, 6, cliff=True, infeasible=True)),
    ("fn-styblinski-categorical-sparse", "train",
     FnSpec("styblinski", 4, 5, categorical=(0, 1, 2), sparse=True, plateau=True)),
    ("fn-branin-mixed-dense", "train", FnSpec("branin", 3, 6, categorical=(2,), plateau=True, infeasible=True)),
    ("fn-rosenbrock-numeric-sparse", "held-out",
     FnSpec("rosenbrock", 4, 5, sparse=True, plateau=True, infeasible=True)),
    ("fn-hartmann6-categorical-dense", "held-out",
     FnSpec("hartmann6", 6, 3, categorical=(0, 1, 2, 3), cliff=True, infeasible=True)),
    ("fn-ackley-numeric-dense", "held-out", FnSpec("ackley", 3, 7, noise=0.05)),
    ("fn-levy-categorical-sparse", "held-out",
     FnSpec("levy", 5, 4, categorical=(1, 2, 3, 4), sparse=True, cliff=True, infeasible=True)),
]


def multicloud_family(frame: pd.DataFrame) -> Family:
    """The development table (already read by the caller) as a family of the ``train`` split."""
    knobs = ["provider", "A_family", "A_vcpu", "B_family", "B_vcpu", "C_family", "C_type", "C_vcpu", "nodes"]
    return Family("multicloud", "train", "dev", lambda seed: frame, "workload", knobs,
                  ["target_runtime:min", "target_cost:min"], "status")


def families(catalog: Mapping[str, CatalogEntry], *, multicloud: pd.DataFrame | None = None) -> list[Family]:
    """Every family: the dev table (when its frame is given), the cloud tables, the test functions.

    ``catalog`` maps ``instance_type`` (e.g. ``c5.xlarge``) to its catalog row
    (:class:`optimizer.replay.features.CatalogEntry`; ``collectors.pricing``'s instance types serve); it must
    hold c5/m5/r5/c6i/m6i/r6i sizes large..4xlarge.

    Raises:
        KeyError: (when a table is built) a needed instance type missing from ``catalog``.
    """
    out = [multicloud_family(multicloud)] if multicloud is not None else []
    out += _cloud_families(catalog)
    out += [Family(name, split, "fn", _fn_builder(spec), "instance", [f"x{j}" for j in range(spec.dims)],
                   ["value:min"], notes=spec.function) for name, split, spec in _FN]
    return out
