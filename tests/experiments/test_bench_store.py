"""Stored benchmark runs: the round trip through the data directory, ids, and the CLI's errors (exit 2, one line,
no traceback) and verdict exit codes (3 on a regression)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from experiments.bench.store import BenchNotFound, check_id, list_runs, load_run, new_run_id, newest_id, save_run
from experiments.bench.suite import BenchRefused, parse_only, suite
from experiments.cli import main
from experiments.settings import Paths


@pytest.fixture()
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("NOVATUNE_HOME", str(h))
    monkeypatch.setenv("COLUMNS", "250")
    return Paths(h)


def _run(rid: str, time: str, values: list[float]) -> dict:
    return {"id": rid, "time": time, "suite": {"name": "quick"}, "machine": {"hostname": "vm"},
            "kernel": {"release": "6.1"}, "knobs": {}, "cpu_quota": None,
            "benchmarks": {"cpu": {"values": values, "median": sorted(values)[len(values) // 2],
                                   "direction": "maximize", "unit": "bogo-ops/s", "min_effect": 0.05,
                                   "metric": "m", "group": "cpu"}}}


def test_round_trip_is_private_and_atomic(home):
    rid = new_run_id()
    doc = _run(rid, "2026-01-01T00:00:00+00:00", [1.0, 2.0, float("nan")])
    path = save_run(home, doc)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    back = load_run(home, rid)
    assert back["benchmarks"]["cpu"]["values"] == [1.0, 2.0, None]  # strict JSON: NaN stored as null
    assert back["id"] == rid
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


def test_ids_are_checked_before_any_path_is_built(home):
    save_run(home, _run("bench-20260101-000000-aaaa", "2026-01-01T00:00:00", [1.0]))
    for bad in ("../../etc/passwd", "bench-20260101-000000-aaab", "", "bench-x"):
        with pytest.raises(BenchNotFound, match="bench-20260101-000000-aaaa"):
            check_id(home, bad)
    with pytest.raises(ValueError):
        save_run(home, {**_run("x", "t", [1.0]), "id": "../x"})


def test_newest_and_listing_order(home):
    save_run(home, _run("bench-20260101-000000-aaaa", "2026-01-01T00:00:00", [1.0]))
    save_run(home, _run("bench-20260102-000000-bbbb", "2026-01-02T00:00:00", [1.0]))
    assert [r["id"] for r in list_runs(home)] == ["bench-20260101-000000-aaaa", "bench-20260102-000000-bbbb"]
    assert newest_id(home) == "bench-20260102-000000-bbbb"
    assert newest_id(home, other_than="bench-20260102-000000-bbbb") == "bench-20260101-000000-aaaa"


def test_a_corrupt_file_is_a_clear_error(home, capsys):
    rid = "bench-20260101-000000-cccc"
    save_run(home, _run(rid, "2026-01-01T00:00:00", [1.0]))
    (home.home / "bench" / f"{rid}.json").write_text("{not json")
    assert main(["bench", "show", rid]) == 2
    assert "is not JSON" in capsys.readouterr().err


def test_suite_and_only_are_checked():
    assert suite("quick").windows >= 3
    assert parse_only("memory, cpu") == ("cpu", "memory")
    assert parse_only(None)[0] == "cpu"
    with pytest.raises(BenchRefused, match="allowed: cpu, memory, io, net, oltp"):
        parse_only("cpu,gpu")
    with pytest.raises(BenchRefused, match="allowed: quick, full"):
        suite("huge")


def test_cli_unknown_id_exits_2_with_the_message(home, capsys):
    assert main(["bench", "compare", "bench-20990101-000000-ffff"]) == 2
    e = capsys.readouterr().err
    assert "no benchmark run 'bench-20990101-000000-ffff'" in e and "Traceback" not in e
    save_run(home, _run("bench-20260101-000000-aaaa", "2026-01-01T00:00:00", [1.0, 1.0, 1.0]))
    assert main(["bench", "show", "nope"]) == 2
    assert "known ids" in capsys.readouterr().err
    # only one run: nothing to compare it with
    assert main(["bench", "compare", "bench-20260101-000000-aaaa"]) == 2
    assert "other than" in capsys.readouterr().err


def test_cli_bad_suite_and_quota_exit_2(home, capsys):
    assert main(["bench", "run", "--suite", "huge"]) == 2
    assert "allowed: quick, full" in capsys.readouterr().err
    assert main(["bench", "run", "--only", "cpu", "--cpu-quota", "0"]) == 2
    assert "--cpu-quota must be between" in capsys.readouterr().err
    assert not (home.home / "bench").exists()  # nothing measured, nothing stored


def test_cli_compare_exit_codes_and_json(home, capsys):
    base = [100.0, 101.0, 99.0, 100.0, 100.5]
    save_run(home, _run("bench-20260101-000000-aaaa", "2026-01-01T00:00:00", base))
    save_run(home, _run("bench-20260102-000000-bbbb", "2026-01-02T00:00:00", [x * 1.01 for x in base]))
    save_run(home, _run("bench-20260103-000000-cccc", "2026-01-03T00:00:00", [x * 0.9 for x in base]))
    assert main(["bench", "compare", "bench-20260101-000000-aaaa", "--run", "bench-20260102-000000-bbbb"]) == 0
    assert "no regression" in capsys.readouterr().out
    assert main(["bench", "compare", "bench-20260101-000000-aaaa", "--json"]) == 3  # the newest: 10 % slower
    rep = json.loads(capsys.readouterr().out)
    assert rep["run"] == "bench-20260103-000000-cccc" and rep["regressions"] == ["cpu"]
    assert main(["bench", "list", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
