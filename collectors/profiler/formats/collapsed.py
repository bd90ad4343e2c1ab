"""Collapsed stacks (Brendan Gregg's folded format, py-spy's ``raw``): ``frame;frame;frame count`` per line.

An optional first line ``# {json}`` carries the profile's metadata (as gProfiler does); readers that do not
know it (flamegraph.pl, speedscope, inferno) skip lines that do not end in a count, and so does this one
when no header is present.
"""

from __future__ import annotations

import json

from collectors.profiler.model import Profile, ProfileError, ProfileMeta, parse_frame

__all__ = ["dumps", "loads"]

#: a collapsed file larger than this is refused (a day of 100 Hz windows is far below it)
MAX_BYTES = 256 * 1024 * 1024


def dumps(profile: Profile, *, header: bool = False) -> str:
    """The profile as collapsed stacks, one line per distinct stack, heaviest first; with ``header``, a
    first line ``# {"novatune_profile": 1, "meta": {...}}``.

    A ``;`` inside a frame label (it would split the frame) is written as ``:``.
    """
    lines = []
    if header:
        lines.append("# " + json.dumps({"novatune_profile": 1, "meta": profile.meta.to_dict()}, sort_keys=True))
    rows = sorted(profile.stacks(), key=lambda sc: -sc[1])
    for stack, count in rows:
        lines.append(";".join(f.label.replace(";", ":") for f in stack) + f" {count}")
    return "\n".join(lines) + ("\n" if lines else "")


def loads(text: str, *, meta: ProfileMeta | None = None) -> Profile:
    """The profile collapsed text holds. A ``# {json}`` first line sets the metadata (``meta`` overrides it).

    Raises:
        ProfileError: the text is too large, or not one line holds a stack and a positive count.
    """
    if len(text) > MAX_BYTES:
        raise ProfileError(f"collapsed profile is {len(text)} bytes; at most {MAX_BYTES} are read")
    found = ProfileMeta(engine="file")
    lines = text.splitlines()
    if lines and lines[0].startswith("#"):
        try:
            doc = json.loads(lines[0][1:].strip())
            if isinstance(doc, dict) and isinstance(doc.get("meta"), dict):
                found = ProfileMeta.from_dict(doc["meta"])
        except json.JSONDecodeError:
            pass
    prof = Profile(meta if meta is not None else found)
    bad = 0
    for raw in lines:
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            bad += 1
            continue
        prof.add([parse_frame(part) for part in stack.split(";")], int(count))
    if not prof.samples:
        what = f" ({bad} lines were not 'frame;frame;... count')" if bad else ""
        raise ProfileError(f"no stack samples found in the collapsed profile{what}; "
                           "each line must be 'frame;frame;... COUNT' with a positive count")
    return prof
