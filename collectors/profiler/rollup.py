"""Hourly aggregates: which windows belong together, and the one profile several windows merge into.

Pure functions over :class:`~collectors.profiler.model.Profile`; :mod:`collectors.profiler.store` decides
when to call them and keeps the result.

Windows belong together (one *bucket*) when they started in the same UTC hour and share the target (pid,
command line, cgroup), the mode and the whole label set; the bucket key is a hash of exactly that, so the
store can hold one aggregate per bucket and find it again. An aggregate's own ``windows`` label (how many
windows it holds) is not part of its identity, so an aggregate merges again into its own bucket.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

from collectors.profiler.model import Profile, ProfileMeta

__all__ = ["HOUR_S", "MAX_MEMORY_POINTS", "WINDOWS_LABEL", "bucket_key", "hour_of", "merge_windows"]

HOUR_S = 3600.0
#: the label an aggregate carries: how many windows it merged (``"1"`` is never written: windows lack it)
WINDOWS_LABEL = "windows"
#: memory-over-time points an aggregate keeps (the newest)
MAX_MEMORY_POINTS = 4096


def hour_of(start: float) -> float:
    """The start of the UTC hour ``start`` (epoch seconds) falls in."""
    return math.floor(start / HOUR_S) * HOUR_S


def bucket_key(meta: ProfileMeta, start: float) -> str:
    """The bucket of a window (or aggregate) started at ``start``: hour, pid, command line, cgroup, mode and
    labels (without :data:`WINDOWS_LABEL`), hashed to 32 hex digits."""
    labels = sorted((k, v) for k, v in meta.labels.items() if k != WINDOWS_LABEL)
    ident = [hour_of(start), meta.pid, meta.cmdline, meta.cgroup, meta.mode, labels]
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]


def _windows(meta: ProfileMeta) -> int:
    if meta.engine != "merged":
        return 1
    try:
        return max(1, int(meta.labels.get(WINDOWS_LABEL, "1")))
    except ValueError:
        return 1


def _weighted(values: Sequence[tuple[float, float]]) -> float:
    """The weight-averaged value of ``(value, weight)`` pairs (plain mean when every weight is 0)."""
    weight = sum(w for _, w in values)
    if weight > 0:
        return sum(v * w for v, w in values) / weight
    return sum(v for v, _ in values) / len(values) if values else 0.0


def merge_windows(parts: Sequence[Profile]) -> Profile:
    """One aggregate of ``parts`` (windows of one bucket, and possibly that bucket's earlier aggregate).

    The result: every sample of every part summed (exact integer counts); ``meta.engine`` ``"merged"``;
    the parts' common target, mode and labels, plus ``labels["windows"]`` = how many windows in all (an
    earlier aggregate counts for its own ``windows``); ``start`` the earliest start; ``duration_s`` the
    seconds actually profiled (the sum of the parts' durations, not the span); ``rate_hz`` and each
    ``overhead`` figure the duration-weighted mean; ``errors`` summed; ``native`` if any part was;
    ``memory`` the parts' points in time order (the newest :data:`MAX_MEMORY_POINTS`). Per-thread figures
    (``threads``) are window-local and not carried over.

    Raises:
        ValueError: ``parts`` is empty.
    """
    if not parts:
        raise ValueError("merge_windows needs at least one profile")
    first = parts[0].meta
    labels = {k: v for k, v in first.labels.items() if k != WINDOWS_LABEL}
    labels[WINDOWS_LABEL] = str(sum(_windows(p.meta) for p in parts))
    overhead: dict[str, list[tuple[float, float]]] = {}
    for p in parts:
        for key, value in p.meta.overhead.items():
            overhead.setdefault(key, []).append((float(value), p.meta.duration_s))
    memory = sorted((point for p in parts for point in p.meta.memory), key=lambda m: m.get("t", 0.0))
    meta = ProfileMeta(
        mode=first.mode,
        engine="merged",
        rate_hz=_weighted([(p.meta.rate_hz, p.meta.duration_s) for p in parts]),
        start=min(p.meta.start for p in parts),
        duration_s=sum(p.meta.duration_s for p in parts),
        pid=first.pid,
        cmdline=first.cmdline,
        cgroup=first.cgroup,
        labels=labels,
        overhead={key: _weighted(pairs) for key, pairs in overhead.items()},
        memory=memory[-MAX_MEMORY_POINTS:],
        errors=sum(p.meta.errors for p in parts),
        native=any(p.meta.native for p in parts),
    )
    out = Profile(meta)
    for p in parts:
        out.merge(p)
    return out
