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
    total: dict[tuple[str, str, int], int] = {}
    self_: dict[tuple[str, str, int], int] = {}
    # (function, file) -> line -> [samples holding it, samples where it is the leaf]
    lines: dict[tuple[str, str], dict[int, list[int]]] = {}
    all_samples = 0
    frames = profile.frames
    for key, count in profile.samples.items():
        code = [frames[i] for i in key if frames[i].kind not in ("thread", "process")]
        all_samples += count
        if not code:
            continue
        seen: set[tuple[str, str, int]] = set()
        for f in code:
            k = (f.function, f.file, f.line if by == "line" else 0)
            if k not in seen:
                seen.add(k)
                total[k] = total.get(k, 0) + count
        if by == "function":
            for fl in {(f.function, f.file, f.line) for f in code}:
                lines.setdefault(fl[:2], {}).setdefault(fl[2], [0, 0])[0] += count
        leaf = code[-1]
        if by == "function":
            lines[leaf.key][leaf.line][1] += count
        k = (leaf.function, leaf.file, leaf.line if by == "line" else 0)
        self_[k] = self_.get(k, 0) + count
    if not all_samples:
        return []
    rows = []
    for k, t in total.items():
        s_pct, t_pct = 100.0 * self_.get(k, 0) / all_samples, 100.0 * t / all_samples
        if s_pct >= threshold_pct or t_pct >= threshold_pct:
            line = k[2] if by == "line" else min(lines[k[:2]].items(), key=lambda lc: (-lc[1][0], -lc[1][1], lc[0]))[0]
            rows.append(Hotspot(function=k[0], file=k[1], line=line, self_pct=s_pct, total_pct=t_pct))
    rows.sort(key=lambda h: (-h.self_pct, -h.total_pct, h.function, h.file, h.line))
    return rows
