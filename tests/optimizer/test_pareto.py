import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optimizer.pareto import hypervolume, hypervolume_history, knee_index, pareto_info, pareto_mask

MAXMIN = ("maximize", "minimize")


def test_pareto_mask_throughput_vs_cost():
    # (throughput up, cost down)
    pts = np.array([[100, 1.0], [150, 2.0], [90, 1.5], [150, 3.0], [200, 4.0]])
    assert pareto_mask(pts, MAXMIN).tolist() == [True, True, False, False, True]


def test_pareto_mask_ignores_non_finite_rows():
    pts = np.array([[np.nan, 1.0], [10, 1.0], [np.inf, 0.0]])
    assert pareto_mask(pts, MAXMIN).tolist() == [False, True, False]


def test_knee_is_the_balanced_point():
    # extremes (10, 1) and (100, 10); (90, 2) is close to utopia (100, 1)
    pts = np.array([[10, 1.0], [100, 10.0], [90, 2.0], [50, 5.0]])
    assert knee_index(pts, MAXMIN) == 2


def test_knee_of_empty_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        knee_index(np.zeros((0, 2)), MAXMIN)


def test_directions_are_checked():
    with pytest.raises(ValueError, match="direction"):
        pareto_mask(np.zeros((1, 2)), ("up", "minimize"))
    with pytest.raises(ValueError, match="2 objective columns but 1"):
        pareto_mask(np.zeros((1, 2)), ("minimize",))


def test_hypervolume_2d_known_value():
    # two boxes to ref (4, 4): (1,3) -> 3x1, (2,1) -> 2x3, overlap 2x1 => 3 + 6 - 2 = 7
    assert hypervolume(np.array([[1.0, 3.0], [2.0, 1.0]]), np.array([4.0, 4.0])) == pytest.approx(7.0)


def test_hypervolume_3d_known_value():
    pts = np.array([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    # box A: 2*2*1 = 4 ; box B: 1*1*2 = 2 ; overlap: 1*1*1 = 1 => 5
    assert hypervolume(pts, np.array([2.0, 2.0, 2.0])) == pytest.approx(5.0)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 10)), min_size=1, max_size=12))
def test_hypervolume_2d_matches_grid_count(points):
    pts = np.array(points)
    ref = np.array([10.0, 10.0])
    exact = hypervolume(pts, ref)
    # Monte-Carlo-free check: the 3-D slicer on a constant third axis equals 2-D x depth
    pts3 = np.c_[pts, np.zeros(len(pts))]
    assert hypervolume(pts3, np.array([10.0, 10.0, 2.0])) == pytest.approx(2 * exact)
    assert 0 <= exact <= 100 * (1 + 1e-12)  # float sums of slabs may round just past the box


def test_history_is_monotone_and_skips_infeasible():
    vals = np.array([[100, 2.0], [50, 1.0], [500, 0.5], [120, 1.5], [130, 1.0]])
    feas = [True, True, False, True, True]
    hist = hypervolume_history(vals, feas, MAXMIN)
    assert np.all(np.diff(hist) >= 0)
    assert hist[2] == hist[1]  # infeasible point adds nothing
    assert hist[-1] > hist[0]


def test_pareto_info_uses_feasible_points_only():
    vals = np.array([[100, 2.0], [1000, 0.1], [120, 1.0]])
    info = pareto_info(vals, [True, False, True], MAXMIN)
    assert info.front.tolist() == [2]
    assert info.knee == 2


def test_pareto_info_nothing_feasible():
    info = pareto_info(np.array([[1.0, 1.0]]), [False], MAXMIN)
    assert info.knee is None and info.front.size == 0


# ------------------------------------------------------------ versus a reference
def test_dominates_needs_one_strict_improvement_and_no_loss() -> None:
    from optimizer.pareto import dominates

    d = ("maximize", "minimize")
    assert dominates([10, 1], [9, 1], d) and dominates([10, 0.5], [10, 1], d)
    assert not dominates([10, 1], [10, 1], d)  # equal: not better
    assert not dominates([11, 1.1], [10, 1], d)  # a trade-off
    assert not dominates([float("nan"), 0], [1, 1], d)


def test_versus_reference_orders_dominating_points_and_gives_signed_changes() -> None:
    from optimizer.pareto import versus_reference

    d = ("maximize", "minimize")
    vals = np.array([[100.0, 1.0],  # the reference
                     [110.0, 0.9],  # dominates: +10 % and -10 %
                     [101.0, 0.5],  # dominates: +1 % and -50 %, the larger mean gain
                     [80.0, 0.7],  # a trade-off
                     [200.0, 0.1]])  # dominates but infeasible
    vs = versus_reference(vals, [True, True, True, True, False], d, 0)
    assert vs.dominating == [2, 1]
    np.testing.assert_allclose(vs.change[1], [0.10, -0.10])
    np.testing.assert_allclose(vs.change[3], [-0.20, -0.30])
    assert vs.better[3].tolist() == [False, True] and vs.worse[3].tolist() == [True, False]
    assert not vs.better[0].any() and not vs.worse[0].any()
    with pytest.raises(ValueError, match="reference index 7"):
        versus_reference(vals, [True] * 5, d, 7)


def _union_area(pts, ref):
    """Area of the union of the boxes [p, ref], by coordinate compression (independent of pareto.py)."""
    pts = [p for p in pts if np.all(np.isfinite(p)) and p[0] < ref[0] and p[1] < ref[1]]
    xs = sorted({p[0] for p in pts} | {ref[0]})
    area = 0.0
    for x0, x1 in zip(xs, xs[1:]):
        ys = [p[1] for p in pts if p[0] <= x0]
        if ys:
            area += (x1 - x0) * (ref[1] - min(ys))
    return area


@pytest.mark.parametrize("seed", range(200))
def test_hypervolume_2d_on_random_fronts(seed):
    # the one 2-D hypervolume (the replay's hv_ratio uses it too): NaN rows, ties, points past the reference
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 25))
    pts = rng.uniform(-0.2, 1.3, size=(n, 2))
    if n and seed % 3 == 0:
        pts[rng.integers(0, n, size=n // 2)] = pts[0]
        pts[: n // 3, 0] = pts[0, 0]
    if n and seed % 5 == 0:
        pts[rng.integers(0, n), int(rng.integers(0, 2))] = np.nan
    ref = np.array([1.1, 1.1])
    assert hypervolume(pts.reshape(-1, 2), ref) == pytest.approx(_union_area(pts, ref), rel=1e-12, abs=1e-12)
