"""Hotspots: self and total shares by function and by line."""

from __future__ import annotations

import pytest

from collectors.profiler.hotspots import Hotspot, hotspots
from collectors.profiler.model import Frame, Profile, ProfileError
from tests.collectors.profiler.a_samples import T1, T2, mix_profile

F = "/srv/r.py"


def test_a_70_25_5_mix_gives_those_shares_most_expensive_first() -> None:
    rows = hotspots(mix_profile())
    got = [(h.function, round(h.self_pct, 6), round(h.total_pct, 6)) for h in rows]
    assert got == [("hot", 70.0, 70.0), ("warm", 25.0, 25.0), ("cold", 5.0, 5.0), ("main", 0.0, 100.0)]
    assert rows[0].file == "/srv/mix.py" and rows[0].line == 10
    assert all("thread" not in h.function for h in rows)  # thread roots are not code


def test_the_threshold_drops_rows_below_it_on_both_shares() -> None:
    assert [h.function for h in hotspots(mix_profile(), threshold_pct=6.0)] == ["hot", "warm", "main"]
    assert [h.function for h in hotspots(mix_profile(), threshold_pct=100.0)] == ["main"]
    assert len(hotspots(mix_profile(), threshold_pct=0.0)) == 4


def test_recursion_counts_once_per_sample() -> None:
    prof = Profile()
    fib = [Frame("fib", F, 3), Frame("fib", F, 5), Frame("fib", F, 5)]
    prof.add([T1, Frame("main", F, 1), *fib, Frame("add", F, 9)], 60)
    prof.add([T1, Frame("main", F, 1), *fib], 40)
    by_name = {h.function: h for h in hotspots(prof)}
    assert by_name["fib"].total_pct == pytest.approx(100.0)  # never 250 %
    assert by_name["fib"].self_pct == pytest.approx(40.0)
    assert by_name["add"].self_pct == pytest.approx(60.0)
    assert by_name["fib"].line == 5  # both lines are in every sample: the tie goes to the leaf line
    lines = {(h.function, h.line): h for h in hotspots(prof, by="line")}
    assert lines[("fib", 5)].total_pct == pytest.approx(100.0)
    assert lines[("fib", 5)].self_pct == pytest.approx(40.0)
    assert lines[("fib", 3)].self_pct == 0.0 and lines[("fib", 3)].total_pct == pytest.approx(100.0)


def test_function_mode_reports_the_most_sampled_line() -> None:
    prof = Profile()
    prof.add([Frame("main", F, 1), Frame("work", F, 20)], 30)
    prof.add([Frame("main", F, 1), Frame("work", F, 25)], 70)
    prof.add([Frame("main", F, 1), Frame("work", F, 10)], 10)
    work = next(h for h in hotspots(prof) if h.function == "work")
    assert work.line == 25 and work.self_pct == pytest.approx(100.0)
    by_line = [(h.function, h.line) for h in hotspots(prof, by="line")]
    assert by_line[:3] == [("work", 25), ("work", 20), ("work", 10)]


def test_same_name_in_two_files_are_two_functions_and_threads_merge() -> None:
    prof = Profile()
    prof.add([T1, Frame("run", "/a.py", 1)], 50)
    prof.add([T2, Frame("run", "/b.py", 1)], 30)
    prof.add([T2, Frame("run", "/a.py", 1)], 20)
    rows = hotspots(prof)
    assert [(h.file, h.self_pct) for h in rows] == [("/a.py", 70.0), ("/b.py", 30.0)]


def test_to_dict_has_exactly_the_agreed_keys() -> None:
    row = hotspots(mix_profile())[0]
    assert row.to_dict() == {"function": "hot", "file": "/srv/mix.py", "line": 10, "self_pct": 70.0,
                             "total_pct": 70.0}
    assert Hotspot("f", "x", 1, 1 / 3 * 100, 50.0).to_dict()["self_pct"] == 33.333


def test_empty_profile_and_bad_options() -> None:
    assert hotspots(Profile()) == []
    with pytest.raises(ProfileError, match="within 0..100"):
        hotspots(mix_profile(), threshold_pct=120.0)
    with pytest.raises(ProfileError, match="allowed are 'function' and 'line'"):
        hotspots(mix_profile(), by="file")  # type: ignore[arg-type]
