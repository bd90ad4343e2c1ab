"""What ``auto``'s model sees of a configuration, and which part of an objective is known before measuring.

* :func:`encode` is the one encoding of configurations for the surrogate: today's columns (one-hot
  categoricals incl. "not applicable", numeric knobs scaled to [0, 1] with an n/a flag) plus the
  knowledge features of :mod:`optimizer.replay.features` (log2-scaled vCPU, GiB per vCPU, generation,
  cluster totals, price per hour) when the knobs name instance types, sizes or families. Variants are
  tried by changing this one function (or :data:`FEATURES`).
* :func:`known_log_price` is the known part of a cost objective: when the objective is price x time
  (its name says cost/price/usd/dollar and the table knows each configuration's price per hour), the
  log price, so the model learns the time and the cost is derived back exactly. Off by default
  (:data:`DERIVE_COST`: it did worse on the Scout-like benchmark); the lead may switch it on.

Pure: no I/O.
"""

from __future__ import annotations

import re

import numpy as np

from optimizer.replay.features import is_count_knob
from optimizer.replay.table import NA, Config, Objective, ReplayTable

__all__ = ["COST_NAME", "DERIVE_COST", "FEATURES", "FEATURE_GROUP", "encode", "has_resource_knobs", "is_cost_name",
           "known_log_price"]

#: the knowledge features as extra model inputs (False: today's encoding only)
FEATURES = True
#: the length-scale group the feature columns share (0: the numeric knobs')
FEATURE_GROUP = 0
#: model a cost objective as a known part x an unknown part: ``"price"`` ($/h of the configuration x time),
#: ``"per_vcpu"`` ($ per vCPU-hour x vCPU-hours), False: the cost as measured (the default: on the Scout-like
#: table of benchmarks/replay_features.py both derivations did worse than modelling the cost itself, 0.50
#: and 0.40 vs 0.65 -- the GP's mean reversion in time space makes the cheapest configurations look best,
#: and the cost optimum sits at the memory cliff, which the time model must then place exactly)
DERIVE_COST: str | bool = False
#: an objective whose name matches is a cost (price x time when the configuration's price is known)
COST_NAME = re.compile(r"cost|price|usd|dollar|eur|spend|billing|\$", re.IGNORECASE)

ENCODING = {"onehot": 1.0, "na": 1.0, "num": 1.0}  # weights of today's columns


def is_cost_name(name: str) -> bool:
    """The objective column's name says it is a cost (cost, price, usd, dollar, ...)."""
    return bool(COST_NAME.search(name))


def _feature_rows(table: ReplayTable, configs: list[Config]) -> np.ndarray:
    """The rows of ``table.features`` (over ``table.space``) for ``configs``."""
    pos = {c: i for i, c in enumerate(table.space)}
    return np.array([pos[c] for c in configs], dtype=int)


def encode(table: ReplayTable, configs: list[Config], *, ard: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """The surrogate's inputs for ``configs`` and each column's length-scale group (None without ``ard``).

    Today's encoding (``ReplayTable.encoder``; groups 0 numeric, 1 categorical/n-a) followed, when
    :data:`FEATURES` and the table has features, by the scaled knowledge features (group
    :data:`FEATURE_GROUP`). A table without features is encoded exactly as before.
    """
    X = table.encoder(**ENCODING)(configs)
    groups = table.encoding_groups()
    if FEATURES and table.features is not None and configs:
        F = table.features.scaled()[_feature_rows(table, configs)]
        if F.shape[1]:
            X = np.column_stack([X, F])
            groups = np.concatenate([groups, np.full(F.shape[1], FEATURE_GROUP, dtype=int)])
    return X, (groups if ard else None)


def known_log_price(table: ReplayTable, configs: list[Config], objective: Objective) -> np.ndarray | None:
    """log($/h of the whole configuration) for ``configs`` when ``objective`` is a cost to minimise whose
    price part is known for every one of them (:data:`DERIVE_COST`); None otherwise."""
    if DERIVE_COST not in ("price", "per_vcpu") or table.features is None:
        return None
    if objective.direction != "min" or not is_cost_name(objective.name):
        return None
    f = table.features
    rows = _feature_rows(table, configs)
    p = f.price_total[rows]
    if DERIVE_COST == "per_vcpu" and "total_vcpu" in f.names:
        p = p / f.values[rows, f.names.index("total_vcpu")]
    if len(p) == 0 or not np.all(np.isfinite(p) & (p > 0)):
        return None
    return np.log(p)


def has_resource_knobs(table: ReplayTable) -> bool:
    """The table's knobs size resources: some name instance types, sizes or families (the table has knowledge
    features) or count nodes/workers/instances (:func:`~optimizer.replay.features.is_count_knob`). Such knobs
    have monotone effects ("more nodes run faster") that a linear trend learns from few points; plain
    anonymous numbers (e.g. x0, x1 of a test function) need not."""
    if table.features is not None:
        return True
    for j, k in enumerate(table.knobs):
        vals = sorted({c[j] for c in table.space if c[j] != NA})
        if is_count_knob(k, vals):
            return True
    return False
