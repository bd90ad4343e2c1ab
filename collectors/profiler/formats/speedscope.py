"""speedscope's file format (https://www.speedscope.app/file-format-schema.json): one ``sampled`` profile per
thread, frames shared.

Layout of what :func:`dumps` writes::

    {"$schema": "https://www.speedscope.app/file-format-schema.json", "exporter": "novatune", "name": ...,
     "activeProfileIndex": 0,
     "shared": {"frames": [{"name": ..., "file": ..., "line": ...}, ...]},
     "profiles": [{"type": "sampled", "name": <thread label or the profile's name>, "unit": "seconds"|"none",
                   "startValue": 0, "endValue": <sum of weights>,
                   "samples": [[frame index, ... root first], ...], "weights": [...]}, ...],
     "novatune": {"version": 1, "meta": {...}, "thread_roots": [true, ...]}}

A profile whose stacks start with ``thread`` frames gets one speedscope profile per thread (named by the
thread frame, which is then left out of the stacks); other profiles get one. Each distinct stack is one
sample whose weight is its count, or its time in seconds (``count / rate_hz``) when the rate is known.
The ``novatune`` key (the schema allows extra keys; speedscope ignores it) carries the metadata so a file
novatune wrote reads back exactly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from collectors.profiler.formats._frames import frame_name, frame_of
from collectors.profiler.model import Frame, Profile, ProfileError, ProfileMeta

__all__ = ["SCHEMA_URL", "dumps", "loads"]

SCHEMA_URL = "https://www.speedscope.app/file-format-schema.json"
EXPORTER = "novatune"
#: a speedscope file larger than this is refused
MAX_BYTES = 256 * 1024 * 1024
_UNITS: dict[str, float] = {"seconds": 1.0, "milliseconds": 1e-3, "microseconds": 1e-6, "nanoseconds": 1e-9}
_NO_THREAD = "(no thread)"
_PYSPY_THREAD = re.compile(r'^Thread (?P<tid>\d+) "(?P<name>.*)"$')


def dumps(profile: Profile) -> str:
    """The profile as a speedscope JSON document (compact, ``$schema`` set).

    Weights are in seconds (``count / meta.rate_hz``) when the rate is known, else sample counts (unit
    ``none``).

    Raises:
        ProfileError: the metadata holds a NaN or an infinity (JSON has no such numbers).
    """
    rate = profile.meta.rate_hz if profile.meta.rate_hz > 0 else 0.0
    threaded = any(profile.frames[key[0]].kind == "thread" for key in profile.samples)
    shared: list[dict[str, Any]] = []
    index: dict[int, int] = {}
    groups: dict[str, tuple[bool, list[list[int]], list[float]]] = {}
    default_name = profile.meta.cmdline or (f"pid {profile.meta.pid}" if profile.meta.pid else "novatune profile")
    for key, count in profile.samples.items():
        root = profile.frames[key[0]]
        if threaded and root.kind == "thread":
            name, rooted, rest = root.function, True, key[1:]
        else:
            name, rooted, rest = (_NO_THREAD if threaded else default_name), False, key
        group = groups.setdefault(name, (rooted, [], []))
        group[1].append([_shared_index(profile.frames[fid], fid, index, shared) for fid in rest])
        group[2].append(count / rate if rate else float(count))
    profiles = [
        {"type": "sampled", "name": name, "unit": "seconds" if rate else "none", "startValue": 0,
         "endValue": math.fsum(weights), "samples": stacks, "weights": weights}
        for name, (_, stacks, weights) in groups.items()
    ]
    doc = {
        "$schema": SCHEMA_URL,
        "exporter": EXPORTER,
        "name": default_name,
        "activeProfileIndex": 0,
        "shared": {"frames": shared},
        "profiles": profiles,
        "novatune": {"version": 1, "meta": profile.meta.to_dict(),
                     "thread_roots": [rooted for rooted, _, _ in groups.values()]},
    }
    try:
        return json.dumps(doc, separators=(",", ":"), allow_nan=False)
    except ValueError as err:
        raise ProfileError(f"the profile's metadata holds a number JSON cannot carry: {err}") from err


def _shared_index(frame: Frame, fid: int, index: dict[int, int], shared: list[dict[str, Any]]) -> int:
    pos = index.get(fid)
    if pos is None:
        entry: dict[str, Any] = {"name": frame_name(frame)}
        if frame.file:
            entry["file"] = frame.file
        if frame.line:
            entry["line"] = frame.line
        pos = index[fid] = len(shared)
        shared.append(entry)
    return pos


def loads(text: str | bytes) -> Profile:
    """The profile a speedscope file holds: its ``sampled`` profiles merged, each under a ``thread`` root
    frame when the file has several (or when novatune wrote it per thread).

    Counts: weights of unit ``none`` are counts; time weights are divided by the rate novatune recorded
    or, in a file from elsewhere, by the smallest positive weight (one sample).

    Raises:
        ProfileError: the text is too large, not JSON, not a speedscope document, holds ``evented``
            profiles, a frame index out of range, weights that do not match the samples, or no samples.
    """
    if len(text) > MAX_BYTES:
        raise ProfileError(f"speedscope file is {len(text)} bytes; at most {MAX_BYTES} are read")
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ProfileError(f"speedscope file is not JSON: {err}") from err
    if not isinstance(doc, dict) or doc.get("$schema") != SCHEMA_URL:
        raise ProfileError(f"not a speedscope file: its '$schema' must be {SCHEMA_URL!r}")
    frames = _read_frames(doc.get("shared"))
    raw_profiles = doc.get("profiles")
    if not isinstance(raw_profiles, list) or not raw_profiles:
        raise ProfileError("speedscope file has no 'profiles' list")
    ext = doc.get("novatune") if isinstance(doc.get("novatune"), dict) else None
    meta = ProfileMeta.from_dict(ext["meta"]) if ext and isinstance(ext.get("meta"), dict) else ProfileMeta()
    if ext is None:
        meta.engine = "file"
    roots = ext.get("thread_roots") if ext else None
    parsed = [_read_profile(i, p, len(frames)) for i, p in enumerate(raw_profiles)]
    period_s = _period_seconds(parsed, meta.rate_hz)
    if ext is None and period_s:
        meta.rate_hz = 1.0 / period_s
    prof = Profile(meta)
    ids: dict[int, int] = {}  # speedscope frame index -> profile frame id, interned on first use
    for i, (name, unit, stacks, weights) in enumerate(parsed):
        rooted = all(frames[stack[0]].kind == "thread" for stack in stacks if stack)
        root = _root_frame(i, name, len(parsed), roots, rooted)
        lead = (prof.intern(root),) if root else ()
        scale = 1.0 if unit == "none" else (_UNITS[unit] / period_s if period_s > 0 else 0.0)
        for stack, weight in zip(stacks, weights):
            count = max(round(weight * scale), 1 if weight > 0 else 0)
            if count < 1 or not (stack or lead):
                continue
            key = lead + tuple(ids[j] if j in ids else ids.setdefault(j, prof.intern(frames[j])) for j in stack)
            prof.samples[key] = prof.samples.get(key, 0) + count
    if not prof.samples:
        raise ProfileError("speedscope file holds no samples (every sampled profile is empty)")
    return prof


def _read_frames(shared: Any) -> list[Frame]:
    if not isinstance(shared, dict) or not isinstance(shared.get("frames"), list):
        raise ProfileError("speedscope file has no 'shared.frames' list")
    out = []
    for i, entry in enumerate(shared["frames"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ProfileError(f"speedscope frame {i} is not an object with a string 'name'")
        file, line = entry.get("file") or "", entry.get("line") or 0
        if not isinstance(file, str) or not isinstance(line, (int, float)) or isinstance(line, bool):
            raise ProfileError(f"speedscope frame {i} has a malformed 'file' or 'line'")
        out.append(frame_of(entry["name"], file, int(line)))
    return out


def _read_profile(i: int, raw: Any, n_frames: int) -> tuple[str, str, list[list[int]], list[float]]:
    if not isinstance(raw, dict):
        raise ProfileError(f"speedscope profile {i} is not an object")
    if raw.get("type") != "sampled":
        raise ProfileError(f"speedscope profile {i} is of type {raw.get('type')!r}; only 'sampled' profiles "
                           "are read (evented ones hold open/close events, not stack samples)")
    unit, samples, weights = raw.get("unit"), raw.get("samples"), raw.get("weights")
    if unit not in _UNITS and unit != "none":
        raise ProfileError(f"speedscope profile {i} has unit {unit!r}; allowed: none, {', '.join(_UNITS)}")
    if not isinstance(samples, list) or not isinstance(weights, list) or len(samples) != len(weights):
        raise ProfileError(f"speedscope profile {i}: 'samples' and 'weights' must be lists of the same length")
    stacks: list[list[int]] = []
    for raw_stack in samples:
        stack = _indices(raw_stack, n_frames)
        if stack is None:
            raise ProfileError(f"speedscope profile {i}: a sample is not a list of frame indices "
                               f"in 0..{n_frames - 1}")
        stacks.append(stack)
    if not all(_is_number(w) and w >= 0 for w in weights):
        raise ProfileError(f"speedscope profile {i}: weights must be finite numbers >= 0")
    name = raw.get("name")
    return (name if isinstance(name, str) else f"profile {i}"), str(unit), stacks, [float(w) for w in weights]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _indices(stack: Any, n: int) -> list[int] | None:
    """``stack`` as frame indices below ``n``, or None when it is not a list of them."""
    if not isinstance(stack, list):
        return None
    if all(type(j) is int for j in stack):  # the common case, fast; bool is no index, a float may be
        return stack if not stack or (min(stack) >= 0 and max(stack) < n) else None
    return [int(j) for j in stack] if all(_is_index(j, n) for j in stack) else None


def _is_index(v: Any, n: int) -> bool:
    return _is_number(v) and float(v).is_integer() and 0 <= v < n


def _period_seconds(parsed: Sequence[tuple[str, str, list[list[int]], list[float]]], rate_hz: float) -> float:
    """One sample's time in seconds: ``1 / rate_hz`` when known, else the smallest positive time weight."""
    if rate_hz > 0:
        return 1.0 / rate_hz
    smallest = [min((w for w in weights if w > 0), default=math.inf) * _UNITS[unit]
                for _, unit, _, weights in parsed if unit in _UNITS]
    best = min(smallest, default=math.inf)
    return best if math.isfinite(best) else 0.0


def _root_frame(i: int, name: str, n_profiles: int, roots: Any, rooted: bool) -> Frame | None:
    """The ``thread`` root of profile ``i``: as novatune recorded it; else none when there is one profile or
    its stacks already start with a thread frame (py-spy ``--threads``); else one named after the profile
    (py-spy's ``Thread TID "NAME"`` becomes py-spy's raw ``thread (TID): NAME``)."""
    if isinstance(roots, Sequence) and not isinstance(roots, str) and i < len(roots):
        return Frame(function=name, kind="thread") if roots[i] else None
    if n_profiles == 1 or rooted:
        return None
    pyspy = _PYSPY_THREAD.match(name)
    if pyspy:
        return Frame(function=f"thread ({pyspy['tid']}): {pyspy['name']}", kind="thread")
    shaped = frame_of(name, "", 0)
    return shaped if shaped.kind == "thread" else Frame(function=f"thread ({i:x}): {name}", kind="thread")
