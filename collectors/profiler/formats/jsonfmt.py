"""The canonical JSON of a profile (:meth:`collectors.profiler.model.Profile.to_dict`): what the store
compresses and the API's ``format=json`` answers.

Canonical: keys sorted, no spaces, UTF-8 text as is, and no NaN or infinity (which JSON does not have), so
one profile always gives the same bytes.
"""

from __future__ import annotations

import json

from collectors.profiler.model import Profile, ProfileError

__all__ = ["dumps", "loads"]

#: a JSON profile larger than this is refused
MAX_BYTES = 256 * 1024 * 1024


def dumps(profile: Profile) -> str:
    """The profile's canonical JSON document as text.

    Raises:
        ProfileError: the metadata holds a NaN or an infinity.
    """
    try:
        return json.dumps(profile.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except ValueError as err:
        raise ProfileError(f"the profile's metadata holds a number JSON cannot carry: {err}") from err


def loads(text: str | bytes) -> Profile:
    """The profile a canonical JSON document holds.

    Raises:
        ProfileError: the text is too large, not JSON, or not a version-1 novatune profile document.
    """
    if len(text) > MAX_BYTES:
        raise ProfileError(f"JSON profile is {len(text)} bytes; at most {MAX_BYTES} are read")
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ProfileError(f"profile file is not JSON: {err}") from err
    return Profile.from_dict(doc)
