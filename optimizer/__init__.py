"""Pure decision code: search space, Pareto front, hypervolume, cost, statistics.

No I/O to the system and no network: everything here takes and returns plain
data, so it can be tested and replayed offline.
"""

from optimizer.cost import Sizing, cost_per_1k_requests, hourly_cost
from optimizer.pareto import (
    ParetoInfo,
    hypervolume,
    hypervolume_history,
    knee_index,
    pareto_info,
    pareto_mask,
)
from optimizer.space import (
    CategoricalParam,
    FloatParam,
    IntParam,
    LessThan,
    Param,
    SearchSpace,
)
from optimizer.stats import Estimate, estimate

__all__ = [
    "CategoricalParam",
    "Estimate",
    "FloatParam",
    "IntParam",
    "LessThan",
    "Param",
    "ParetoInfo",
    "SearchSpace",
    "Sizing",
    "cost_per_1k_requests",
    "estimate",
    "hourly_cost",
    "hypervolume",
    "hypervolume_history",
    "knee_index",
    "pareto_info",
    "pareto_mask",
]
