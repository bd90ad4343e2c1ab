"""Canonical JSON and collapsed stacks: exact round trips of a known profile, and bad input refused."""

from __future__ import annotations

import json
import math

import pytest

from collectors.profiler.formats import collapsed, jsonfmt
from collectors.profiler.model import ProfileError
from tests.collectors.profiler.a_samples import known_profile, stack_counts


def test_json_round_trip_is_exact_and_canonical() -> None:
    prof = known_profile()
    text = jsonfmt.dumps(prof)
    back = jsonfmt.loads(text)
    assert back.to_dict() == prof.to_dict()
    assert stack_counts(back) == stack_counts(prof)
    assert jsonfmt.dumps(back) == text  # same profile, same bytes
    assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert jsonfmt.loads(text.encode()).to_dict() == prof.to_dict()


def test_json_refuses_nan_and_bad_documents() -> None:
    prof = known_profile()
    prof.meta.overhead["x"] = math.inf
    with pytest.raises(ProfileError, match="number JSON cannot carry"):
        jsonfmt.dumps(prof)
    with pytest.raises(ProfileError, match="not JSON"):
        jsonfmt.loads("{oops")
    with pytest.raises(ProfileError, match="not a novatune profile document"):
        jsonfmt.loads('{"version": 2}')
    with pytest.raises(ProfileError, match="malformed"):
        jsonfmt.loads('{"version": 1, "frames": [["f", "", 0, "python"]], "samples": [[[3], 1]]}')


def test_collapsed_round_trip_keeps_every_stack_count() -> None:
    """Collapsed labels carry function, file and line (a ';' in a name is written ':')."""
    prof = known_profile()
    back = collapsed.loads(collapsed.dumps(prof, header=True))
    def labels(p):
        return {tuple(f.label.replace(";", ":") for f in s): c for s, c in stack_counts(p).items()}
    assert labels(back) == labels(prof)
    assert back.total == prof.total == 1000
    assert back.meta == prof.meta


@pytest.mark.parametrize("text", ["", "just words\n", "a;b;c notanumber\n", "a;b -3\n"])
def test_collapsed_refuses_text_without_a_stack_and_count(text: str) -> None:
    with pytest.raises(ProfileError, match="no stack samples found"):
        collapsed.loads(text)
