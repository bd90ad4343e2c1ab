"""Replay benchmark: judge samplers on a table of measured configurations.

Each group of the table (e.g. a workload) is a finite grid of configurations
whose objectives were measured. A tuner proposes configurations, the table
answers with the measured values; the summary says how often the best feasible
configuration found within the budget is within 10% of the group's optimum,
beside random search with the same budget and seeds. See docs/replay.md.

Pure decision code: takes a pandas frame, returns dataclasses and rows.

* :mod:`optimizer.replay.table` - loading: validation and aggregation of the table;
* :mod:`optimizer.replay.features`, :mod:`optimizer.replay.encoding` - numeric figures of knobs that
  name instance types/sizes/families, and what ``auto``'s model sees (incl. cost = price x time);
* :mod:`optimizer.replay.knobspace`, :mod:`optimizer.replay.proposers` - the searchers
  (Optuna samplers come from ``optimizer.samplers``, the one factory);
* :mod:`optimizer.replay.search` - the loop over groups and seeds;
* :mod:`optimizer.replay.scoring` - the figures and the summary.
"""

from __future__ import annotations

from optimizer.replay import encoding, features
from optimizer.replay.knobspace import KnobSpace
from optimizer.replay.proposers import (
    AutoProposer,
    OptunaProposer,
    RandomProposer,
    make_optuna_sampler,
    make_proposer,
    transfer_prior,
)
from optimizer.replay.scoring import WITHIN, hv_ratio, regret, summarise, within
from optimizer.replay.search import ReplayResult, run_replay
from optimizer.replay.table import (
    NA,
    NA_TOKEN,
    Group,
    Objective,
    ReplayError,
    ReplayTable,
    parse_feasible,
    parse_objective,
)
from optimizer.samplers import SAMPLERS

__all__ = [
    "NA",
    "NA_TOKEN",
    "SAMPLERS",
    "WITHIN",
    "encoding",
    "features",
    "AutoProposer",
    "Group",
    "KnobSpace",
    "Objective",
    "OptunaProposer",
    "RandomProposer",
    "ReplayError",
    "ReplayResult",
    "ReplayTable",
    "hv_ratio",
    "make_optuna_sampler",
    "make_proposer",
    "parse_feasible",
    "parse_objective",
    "regret",
    "run_replay",
    "summarise",
    "transfer_prior",
    "within",
]
