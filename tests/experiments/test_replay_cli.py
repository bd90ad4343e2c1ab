"""`novatune replay` end to end: JSON shape, trace -> summary, errors exit 2 without a traceback."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments.cli import main

REPO = Path(__file__).resolve().parents[2]
CSV = """bench,engine,threads,cache,latency_ms,throughput,valid
w1,rocks,1,small,10,100,yes
w1,rocks,2,small,8,150,yes
w1,rocks,4,big,5,300,ok
w1,lmdb,1,,7,120,disk full
w1,lmdb,2,,6,140,yes
w1,lmdb,4,,6.5,160,1
w2,rocks,1,small,11,90,true
w2,rocks,2,small,9,130,yes
w2,rocks,4,big,6,280,yes
w2,lmdb,1,,8,110,yes
w2,lmdb,2,,7,150,true
w3,rocks,1,small,1,1,no
"""
BASE = ["--group", "bench", "--knobs", "engine,threads,cache", "--objective", "throughput:max", "--feasible", "valid"]


@pytest.fixture
def table(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text(CSV)
    return p


def cli(*args):
    return subprocess.run([sys.executable, "-m", "experiments", "replay", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)


def test_json_shape_and_trace_recomputes_summary(table, tmp_path):
    trace = tmp_path / "trace.csv"
    r = cli(table, *BASE, "--budget", 2, "--seeds", 3, "--trace", trace, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert {"budget", "seeds", "sampler", "groups", "overall"} <= set(s)
    assert s["budget"] == 2 and s["seeds"] == 3 and s["sampler"] == "auto"
    assert set(s["overall"]["throughput"]) == {
        "p_within_10pct", "random_p_within_10pct", "mean_regret", "random_mean_regret"}
    assert s["excluded"] == ["w3"]
    rows = list(csv.DictReader(trace.open()))
    assert rows[0].keys() >= {"group", "seed", "step", "engine", "threads", "cache", "throughput", "feasible"}
    optimum = {"w1": 300.0, "w2": 280.0}
    for run, key in (("sampler", "p_within_10pct"), ("random", "random_p_within_10pct")):
        ps = []
        for g, opt in optimum.items():
            hits = []
            for seed in range(3):
                v = [float(x["throughput"]) for x in rows
                     if x["run"] == run and x["group"] == g and x["seed"] == str(seed) and x["feasible"] == "True"]
                hits.append(bool(v) and (opt - max(v)) / opt <= 0.1)
            ps.append(np.mean(hits))
        assert np.mean(ps) == pytest.approx(s["overall"]["throughput"][key])


def test_text_summary_in_process(table, capsys):
    assert main(["replay", str(table), *BASE, "--budget", "2", "--seeds", "2", "--sampler", "random"]) == 0
    assert "OVERALL" in capsys.readouterr().out


@pytest.mark.parametrize(
    "change, words",
    [
        (["--sampler", "bogus"], ["bogus", "allowed", "tpe"]),
        (["--budget", "0"], ["--budget"]),
        (["--knobs", "engine,nope"], ["nope", "no such column"]),
        (["--objective", "engine:min"], ["not numeric"]),
        (["--objective", "throughput:up"], ["min or", "max"]),
    ],
)
def test_bad_input_exit_2(table, change, words):
    args = [table, *BASE, "--budget", 2, "--seeds", 1]
    for i in range(0, len(change), 2):
        if change[i] in args:
            args[args.index(change[i]) + 1] = change[i + 1]
        else:
            args += change[i : i + 2]
    r = cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    text = " ".join(r.stderr.split())
    for w in words:
        assert w in text


def test_missing_file_exit_2(tmp_path):
    r = cli(tmp_path / "none.csv", *BASE, "--budget", 2, "--seeds", 1)
    assert r.returncode == 2 and "no such file" in " ".join(r.stderr.split()) and "Traceback" not in r.stderr


def test_gp_without_torch_says_how_to_install(table):
    from optimizer.bo import torch_available

    if torch_available():
        pytest.skip("torch is installed")
    r = cli(table, *BASE, "--budget", 2, "--seeds", 1, "--sampler", "gp")
    assert r.returncode == 2
    assert "novatune[gp]" in " ".join(r.stderr.split())


def test_gp_without_torch_in_process(table, capsys, monkeypatch):
    import optimizer.bo

    monkeypatch.setattr(optimizer.bo, "torch_available", lambda: False)
    assert main(["replay", str(table), *BASE, "--budget", "2", "--seeds", "1", "--sampler", "gp"]) == 2
    text = " ".join(capsys.readouterr().err.split())
    assert "novatune[gp]" in text and "torch==2.13.0" in text
