"""Before the replay's own 2-D hypervolume goes: it equals optimizer.pareto's, bit for bit, on random fronts."""

import numpy as np
import pytest

from optimizer.pareto import hypervolume
from optimizer.replay import hypervolume_2d


@pytest.mark.parametrize("seed", range(300))
def test_replay_hypervolume_2d_equals_pareto_hypervolume(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 25))
    pts = rng.uniform(-0.2, 1.3, size=(n, 2))
    if n and seed % 3 == 0:  # duplicates and ties on one coordinate
        pts[rng.integers(0, n, size=n // 2)] = pts[0]
        pts[: n // 3, 0] = pts[0, 0]
    if n and seed % 5 == 0:  # normalisation of an empty span yields NaN rows
        pts[rng.integers(0, n), int(rng.integers(0, 2))] = np.nan
    ref = np.array([1.1, 1.1])
    assert hypervolume(pts.reshape(-1, 2), ref) == hypervolume_2d(pts, ref)
