"""benchmarks._readers: self shares per leaf function as the external readers see each format."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks._readers import (
    ReaderError,
    parse_text_format,
    protoc_decode,
    shares_collapsed,
    shares_pprof,
    shares_speedscope,
)
from collectors.profiler.formats import collapsed, pprof, speedscope
from tests.collectors.profiler.a_samples import known_profile, mix_profile, need_protoc

MIX = {"hot": 70.0, "warm": 25.0, "cold": 5.0}


def _close(got: dict[str, float], want: dict[str, float]) -> None:
    assert set(got) == set(want)
    for name, pct in want.items():
        assert got[name] == pytest.approx(pct, abs=1e-9), name


def test_collapsed_shares_of_the_mix(tmp_path: Path) -> None:
    path = tmp_path / "mix.txt"
    path.write_text(collapsed.dumps(mix_profile(), header=True))
    _close(shares_collapsed(path), MIX)


@pytest.mark.parametrize("rate_hz", [100.0, 0.0])
def test_speedscope_shares_of_the_mix(tmp_path: Path, rate_hz: float) -> None:
    path = tmp_path / "mix.speedscope.json"
    path.write_text(speedscope.dumps(mix_profile(rate_hz=rate_hz)))
    _close(shares_speedscope(path), MIX)


def test_pprof_shares_of_the_mix(tmp_path: Path) -> None:
    need_protoc()
    path = tmp_path / "mix.pb.gz"
    path.write_bytes(pprof.dumps(mix_profile()))
    _close(shares_pprof(path), MIX)


def test_all_three_agree_on_a_profile_with_threads_recursion_and_native_frames(tmp_path: Path) -> None:
    need_protoc()
    prof = known_profile()
    (tmp_path / "p.txt").write_text(collapsed.dumps(prof))
    (tmp_path / "p.json").write_text(speedscope.dumps(prof))
    (tmp_path / "p.pb.gz").write_bytes(pprof.dumps(prof))
    c, s, p = (shares_collapsed(tmp_path / "p.txt"), shares_speedscope(tmp_path / "p.json"),
               shares_pprof(tmp_path / "p.pb.gz"))
    assert c["parse"] == s["parse"] == p["parse"] == pytest.approx(40.0)
    assert s["schedule_[k]"] == p["schedule_[k]"] == pytest.approx(8.0)
    assert sum(s.values()) == pytest.approx(100.0) and sum(p.values()) == pytest.approx(100.0)


def test_a_speedscope_file_against_the_schema_is_refused(tmp_path: Path) -> None:
    doc = json.loads(speedscope.dumps(mix_profile()))
    del doc["profiles"][0]["weights"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReaderError, match="is not valid under any of the given schemas at \\['profiles', 0\\]"):
        shares_speedscope(path)


def test_a_malformed_collapsed_line_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("a;b 3\na;b three\n")
    with pytest.raises(ReaderError, match=":2: not 'frame"):
        shares_collapsed(path)


def test_protoc_refuses_junk() -> None:
    need_protoc()
    with pytest.raises(ReaderError, match="protoc --decode failed"):
        protoc_decode(b"\xff\xff\xff\xff")


def test_text_format_parsing() -> None:
    text = 'a: 1\nm {\n  s: "q\\"\\303\\251\\x41\\n"\n  m2 {\n    e: TRUE\n  }\n}\nm {\n}\n'
    assert parse_text_format(text) == {"a": [1], "m": [{"s": ['q"éA\n'], "m2": [{"e": ["TRUE"]}]}, {}]}
    with pytest.raises(ReaderError, match="closes nothing"):
        parse_text_format("}\n")
    with pytest.raises(ReaderError, match="not closed"):
        parse_text_format("m {\n")
