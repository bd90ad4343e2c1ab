"""Pareto front, knee point and hypervolume: computation only, no rendering.

Every function takes plain numpy arrays plus the objective directions
(``"maximize"`` / ``"minimize"``) and works internally on a *loss* matrix where
every column is minimised. Drawing lives in ``experiments`` and only reads the
:class:`ParetoInfo` returned here (Optuna's ``_get_pareto_front_info`` pattern).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "ParetoInfo",
    "Versus",
    "dominates",
    "hypervolume",
    "hypervolume_history",
    "knee_index",
    "pareto_info",
    "pareto_mask",
    "reference_point",
    "to_loss",
    "versus_reference",
]

_VALID = ("maximize", "minimize")


def _check(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 2:
        raise ValueError(f"values must be a 2-D array (points x objectives), got shape {arr.shape}")
    if arr.shape[1] != len(directions):
        raise ValueError(f"{arr.shape[1]} objective columns but {len(directions)} directions")
    for d in directions:
        if d not in _VALID:
            raise ValueError(f"direction {d!r} is not one of {list(_VALID)}")
    return arr


def to_loss(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Return a copy where every objective is to be minimised."""
    arr = _check(values, directions).copy()
    for j, d in enumerate(directions):
        if d == "maximize":
            arr[:, j] = -arr[:, j]
    return arr


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """Boolean mask of the non-dominated rows (duplicates of a front point all stay)."""
    loss = to_loss(values, directions)
    n = loss.shape[0]
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        if not np.all(np.isfinite(loss[i])):
            mask[i] = False
            continue
        dominated_by = np.all(loss <= loss[i], axis=1) & np.any(loss < loss[i], axis=1)
        if np.any(dominated_by & np.all(np.isfinite(loss), axis=1)):
            mask[i] = False
    return mask


def knee_index(values: np.ndarray, directions: Sequence[str]) -> int:
    """Index (into ``values``) of the knee of the Pareto front.

    The knee is the front point closest to the utopia point after each
    objective is normalised to [0, 1] over the front: the balanced compromise.
    Ties go to the lowest index. Raises ``ValueError`` on an empty input.
    """
    loss = to_loss(values, directions)
    if loss.shape[0] == 0:
        raise ValueError("no points: the knee of an empty front is undefined")
    mask = pareto_mask(values, directions)
    if not mask.any():
        raise ValueError("no finite points: the knee is undefined")
    idx = np.flatnonzero(mask)
    front = loss[idx]
    lo, hi = front.min(axis=0), front.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    norm = (front - lo) / span
    dist = np.sqrt((norm**2).sum(axis=1))
    return int(idx[int(np.argmin(dist))])


def reference_point(loss: np.ndarray, *, margin: float = 0.1) -> np.ndarray:
    """Nadir of ``loss`` pushed out by ``margin`` of each objective's span (or of its magnitude)."""
    worst, best = loss.max(axis=0), loss.min(axis=0)
    span = np.where(worst > best, worst - best, np.maximum(np.abs(worst), 1.0))
    return worst + margin * span


def _hv_2d(points: np.ndarray, ref: np.ndarray) -> float:
    pts = points[np.all(points < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]
    volume, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            volume += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(volume)


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume by slicing along the last objective (fine for small fronts)."""
    pts = points[np.all(points < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    if pts.shape[1] == 2:
        return _hv_2d(pts, ref)
    pts = pts[np.argsort(pts[:, -1])]
    volume = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = upper - pts[i, -1]
        if depth > 0:
            volume += depth * _hv(pts[: i + 1, :-1], ref[:-1])
    return float(volume)


def hypervolume(loss: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume dominated by ``loss`` rows (all minimised) up to ``ref``."""
    loss = np.asarray(loss, dtype=float)
    if loss.size == 0:
        return 0.0
    finite = loss[np.all(np.isfinite(loss), axis=1)]
    return _hv(finite, np.asarray(ref, dtype=float))


def hypervolume_history(
    values: np.ndarray, feasible: Sequence[bool], directions: Sequence[str], *, ref: np.ndarray | None = None
) -> np.ndarray:
    """Hypervolume of the feasible points seen after each trial, in trial order.

    One reference point (from all feasible points unless given) serves the
    whole history, so the curve is comparable from trial to trial and never
    decreases. Infeasible or failed trials (non-finite rows) add nothing.
    """
    loss = to_loss(values, directions)
    ok = np.asarray(feasible, dtype=bool) & np.all(np.isfinite(loss), axis=1)
    if ref is None:
        if not ok.any():
            return np.zeros(len(loss))
        ref = reference_point(loss[ok])
    history = np.zeros(len(loss))
    for i in range(len(loss)):
        seen = loss[: i + 1][ok[: i + 1]]
        history[i] = hypervolume(seen, ref) if len(seen) else 0.0
    return history


class ParetoInfo(NamedTuple):
    """What a plot or a report needs to show a study's trade-off."""

    directions: tuple[str, ...]
    values: np.ndarray  # all points, in trial order
    feasible: np.ndarray  # bool per point
    front: np.ndarray  # indices of the feasible non-dominated points
    knee: int | None  # index of the knee, None when nothing is feasible
    hv_history: np.ndarray  # hypervolume after each point
    reference: np.ndarray | None  # reference point in loss space


def pareto_info(values: np.ndarray, feasible: Sequence[bool], directions: Sequence[str]) -> ParetoInfo:
    """Front, knee and hypervolume history of the *feasible* points."""
    arr = _check(values, directions)
    ok = np.asarray(feasible, dtype=bool) & np.all(np.isfinite(arr), axis=1)
    idx = np.flatnonzero(ok)
    if len(idx) == 0:
        return ParetoInfo(tuple(directions), arr, ok, np.array([], dtype=int), None, np.zeros(len(arr)), None)
    sub = arr[idx]
    front = idx[pareto_mask(sub, directions)]
    knee = int(idx[knee_index(sub, directions)])
    ref = reference_point(to_loss(sub, directions))
    history = hypervolume_history(arr, ok, directions, ref=ref)
    return ParetoInfo(tuple(directions), arr, ok, front, knee, history, ref)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether point ``a`` is at least as good as ``b`` on every objective and better on one."""
    loss = to_loss(np.array([a, b], dtype=float), directions)
    if not np.all(np.isfinite(loss)):
        return False
    return bool(np.all(loss[0] <= loss[1]) and np.any(loss[0] < loss[1]))


class Versus(NamedTuple):
    """How a set of points compares with one reference point (the baseline: the values before tuning)."""

    dominating: list[int]  # feasible indices that dominate the reference, best improvement first
    change: np.ndarray  # (points x objectives) relative change against the reference (+0.1 = 10 % higher)
    better: np.ndarray  # bool (points x objectives): better than the reference in the objective's direction
    worse: np.ndarray  # bool (points x objectives): worse than the reference


def versus_reference(values: np.ndarray, feasible: Sequence[bool], directions: Sequence[str], ref: int) -> Versus:
    """Compare every point with point ``ref``: which feasible points dominate it, and each point's
    relative change per objective (NaN where the reference is 0 or a value is not finite).

    The dominating points are ordered by their mean relative improvement (in loss terms), largest first.
    """
    arr = _check(values, directions)
    if not 0 <= ref < len(arr):
        raise ValueError(f"reference index {ref} is outside 0..{len(arr) - 1}")
    base = arr[ref]
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(base != 0, (arr - base) / np.abs(base), np.nan)
    loss = to_loss(arr, directions)
    better, worse = loss < loss[ref], loss > loss[ref]
    ok = np.asarray(feasible, dtype=bool)
    dom = [i for i in range(len(arr)) if i != ref and ok[i] and dominates(arr[i], base, directions)]
    sign = np.array([1.0 if d == "maximize" else -1.0 for d in directions])
    gain = {i: float(np.nanmean(change[i] * sign)) if np.any(np.isfinite(change[i])) else 0.0 for i in dom}
    dom.sort(key=lambda i: -gain[i])
    return Versus(dom, change, better, worse)
