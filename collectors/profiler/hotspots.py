"""Hotspots: the functions (or lines) where a profile's samples go, by self and total share.

- **self share**: the percentage of all samples whose leaf frame is the function (line);
- **total share**: the percentage of all samples whose stack holds it at least once (a recursive function is
  counted once per sample, so no share exceeds 100 %).

``thread`` and ``process`` root frames are left out (they are not code). A function is ``(name, file)``;
in ``by="function"`` mode its reported ``line`` is its **most-sampled line** (the line of its frames held by
the most samples; on a tie the one that is the leaf in the most samples, then the smallest), which is where a
reader would look first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from collectors.profiler.model import Profile, ProfileError

__all__ = ["Hotspot", "hotspots"]

By = Literal["function", "line"]


@dataclass(frozen=True, slots=True)
class Hotspot:
    """One function (or line) and its shares of all samples, in percent."""

    function: str
    file: str
    line: int
    self_pct: float
    total_pct: float

    def to_dict(self) -> dict[str, Any]:
        """``{"function", "file", "line", "self_pct", "total_pct"}`` (percentages to 3 decimals)."""
        return {"function": self.function, "file": self.file, "line": self.line,
                "self_pct": round(self.self_pct, 3), "total_pct": round(self.total_pct, 3)}


def hotspots(profile: Profile, *, threshold_pct: float = 5.0, by: By = "function") -> list[Hotspot]:
    """The functions (``by="function"``) or lines (``by="line"``) whose self or total share is at least
    ``threshold_pct``, most expensive first (self share, then total share, then name).

    An empty profile has no hotspots.

    Raises:
        ProfileError: ``threshold_pct`` is not within 0..100, or ``by`` is neither "function" nor "line".
    """
    if by not in ("function", "line"):
        raise ProfileError(f"hotspots by {by!r}: allowed are 'function' and 'line'")
    if not 0.0 <= threshold_pct <= 100.0:
        raise ProfileError(f"hotspot threshold {threshold_pct} %: it must be within 0..100")
    units, unit_of = _index(profile, by)  # what a row is: (function, file, line or 0)
    places, place_of = _index(profile, "line")  # (function, file, line), for a function's reported line
    code = [f.kind not in ("thread", "process") for f in profile.frames]
    total, self_ = [0] * len(units), [0] * len(units)
    held, leaf_of = [0] * len(places), [0] * len(places)
    all_samples = 0
    for key, count in profile.samples.items():
        all_samples += count
        ids = [fid for fid in key if code[fid]]
        if not ids:
            continue
        for u in {unit_of[fid] for fid in ids}:  # once per sample, however deep the recursion
            total[u] += count
        self_[unit_of[ids[-1]]] += count
        if by == "function":
            for p in {place_of[fid] for fid in ids}:
                held[p] += count
            leaf_of[place_of[ids[-1]]] += count
    if not all_samples:
        return []
    best: dict[tuple[str, str], tuple[int, int, int]] = {}  # (function, file) -> (-held, -leaf, line)
    for p, (function, file, line) in enumerate(places):
        rank = (-held[p], -leaf_of[p], line)
        if held[p] and rank < best.get((function, file), (1, 1, 0)):
            best[(function, file)] = rank
    rows = []
    for u, (function, file, unit_line) in enumerate(units):
        s_pct, t_pct = 100.0 * self_[u] / all_samples, 100.0 * total[u] / all_samples
        if total[u] and (s_pct >= threshold_pct or t_pct >= threshold_pct):
            line = unit_line if by == "line" else best[(function, file)][2]
            rows.append(Hotspot(function=function, file=file, line=line, self_pct=s_pct, total_pct=t_pct))
    rows.sort(key=lambda h: (-h.self_pct, -h.total_pct, h.function, h.file, h.line))
    return rows


def _index(profile: Profile, by: By) -> tuple[list[tuple[str, str, int]], list[int]]:
    """The distinct ``(function, file, line)`` (line 0 ``by="function"``) of the profile's frames, and the
    position of each frame's in that list."""
    units: dict[tuple[str, str, int], int] = {}
    of = [units.setdefault((f.function, f.file, f.line if by == "line" else 0), len(units)) for f in profile.frames]
    return list(units), of
