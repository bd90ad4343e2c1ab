"""`rightsize replay` (part A): the command through typer on a small app, the contract's JSON, a Bitbrains
slice whose summary is computed from the test split only, and bad input answered without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from collectors.usage.traces import TraceError, read_bitbrains
from experiments.cli.rightsize_replay import replay_cmd
from experiments.rightsizing.replay import replay_report
from optimizer.rightsizing import synthetic
from optimizer.rightsizing.replay import score, split

BITBRAINS = Path("/work/shared/datasets/utilization/bitbrains_rnd")
KEYS = {"vm_id", "cpu_cores", "mem_gib", "finding", "confidence", "instance_type", "usd_per_month",
        "savings_usd_per_month"}

app = typer.Typer()
app.command("replay")(replay_cmd)
app.command("noop")(lambda: None)  # two commands: `replay` stays a subcommand, as under `rightsize`


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))


def run(*args: str):
    return CliRunner().invoke(app, ["replay", *args])


def trace(tmp_path: Path, n_vms: int = 3, days: float = 3) -> Path:
    frames = []
    for i in range(n_vms):
        s = synthetic.generate(synthetic.SHAPES[i], seed=i, days=days, target=f"vm{i}")
        frames.append(pd.DataFrame({"vm_id": s.target, "timestamp": s.t, "cpu_used_cores": s.cpu_cores,
                                    "mem_used_gib": s.mem_gib, "cpu_cores_capacity": s.cpu_capacity,
                                    "mem_capacity_gib": s.mem_capacity}))
    frames.append(pd.DataFrame({"vm_id": "tiny", "timestamp": [0, 300, 600], "cpu_used_cores": [1, 1, 1],
                                "mem_used_gib": [1, 1, 1], "cpu_cores_capacity": 2, "mem_capacity_gib": 4}))
    p = tmp_path / "trace.csv"
    pd.concat(frames).to_csv(p, index=False)
    return p


def test_json_follows_the_contract(tmp_path):
    r = run(str(trace(tmp_path)), "--json", "--train-frac", "0.6", "--profile", "savings")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert set(d) == {"recommendations", "summary"}
    assert [x["vm_id"] for x in d["recommendations"]] == ["vm0", "vm1", "vm2", "tiny"]
    for rec in d["recommendations"]:
        assert set(rec) == KEYS
    tiny = d["recommendations"][-1]
    assert tiny["finding"] == "insufficient-data"
    s = d["summary"]
    assert s["train_frac"] == 0.6 and s["profile"] == "savings" and s["vms"] == 4
    for res in ("cpu", "memory"):
        assert set(s[res]) == {"recommender", "rules", "dominated_by", "weakly_dominated_by"}
        assert set(s[res]["rules"]) == {"p90+15%", "p95+20%", "p99+20%", "max+10%"}
        assert set(s[res]["recommender"]) == {"under_provisioned_pct", "unused_pct"}
    priced = [x for x in d["recommendations"] if x["instance_type"]]
    assert priced and all(x["usd_per_month"] > 0 for x in priced)


def test_table_output(tmp_path):
    r = run(str(trace(tmp_path, n_vms=2)))
    assert r.exit_code == 0, r.output
    assert "recommendations" in r.output and "p90+15%" in r.output and "under-provisioned %" in r.output


@pytest.mark.parametrize(("args", "words"), [
    (["--train-frac", "1.5"], ["--train-frac 1.5", "between 0 and 1"]),
    (["--profile", "cheap"], ["unknown profile 'cheap'", "savings, balanced, reliability"]),
])
def test_bad_options_are_trace_errors(tmp_path, args, words):
    r = run(str(trace(tmp_path, n_vms=1)), *args)
    assert isinstance(r.exception, TraceError)
    for w in words:
        assert w in str(r.exception)


def test_bad_trace_is_one_line_exit_2_through_the_main_cli(tmp_path, monkeypatch, capsys):
    from experiments import cli

    p = tmp_path / "bad.csv"
    p.write_text("vm_id,timestamp,cpu_used_cores\na,1,1\n")
    monkeypatch.setattr(cli.app, "registered_commands", [])
    cli.app.command("rsreplay")(replay_cmd)
    assert cli.main(["rsreplay", str(p), "--json"]) == 2
    e = capsys.readouterr().err
    assert "lacks column(s) mem_used_gib" in e and "Traceback" not in e
    monkeypatch.setenv("NOVATUNE_TRACE_MAX_BYTES", str(1 << 20))
    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.write(b"vm_id,timestamp,cpu_used_cores,mem_used_gib\n")
        f.truncate(3 << 20)
    assert cli.main(["rsreplay", str(big)]) == 2
    assert "trace_max_bytes" in capsys.readouterr().err


@pytest.mark.skipif(not BITBRAINS.is_dir(), reason="the shared Bitbrains data set is not here")
def test_bitbrains_slice_summary_is_from_the_test_split_only(tmp_path):
    all_vms = read_bitbrains(BITBRAINS)
    picked = {vm: all_vms[vm] for vm in ("30", "56", "150")}  # idle, saturated, steady
    # a slice: 4 days of each (the contract's CSV written and read back through the command)
    rows = []
    for vm, s in picked.items():
        k = 4 * 288
        rows.append(pd.DataFrame({"vm_id": vm, "timestamp": s.t[:k].astype(np.int64),
                                  "cpu_used_cores": s.cpu_cores[:k], "mem_used_gib": s.mem_gib[:k],
                                  "cpu_cores_capacity": s.cpu_capacity[:k], "mem_capacity_gib": s.mem_capacity[:k]}))
    p = tmp_path / "bb.csv"
    pd.concat(rows).to_csv(p, index=False)
    r = run(str(p), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    recs = {x["vm_id"]: x for x in d["recommendations"]}
    assert set(recs) == {"30", "56", "150"}
    assert recs["56"]["finding"] == "under-provisioned" and recs["56"]["cpu_cores"] > 8
    assert recs["30"]["finding"] == "over-provisioned"
    # recompute the recommender's pooled figures from the test part alone, with its sizes
    from collectors.usage.traces import read_trace

    series = read_trace(p, max_bytes=1 << 30)
    for res, key, col in (("cpu", "cpu_cores", "cpu_cores"), ("memory", "mem_gib", "mem_gib")):
        total = None
        for vm, s in series.items():
            k = split(s, 0.5)
            sc = score(recs[vm][key], getattr(s, col)[k:])
            total = sc if total is None else total + sc
        assert d["summary"][res]["recommender"]["under_provisioned_pct"] == pytest.approx(total.under_pct, abs=0.01)
        assert d["summary"][res]["recommender"]["unused_pct"] == pytest.approx(total.unused_pct, abs=0.05)
    # and the training part alone decided: scrambling the test part changes the figures, not the sizes
    scrambled = {vm: s.__class__(target=vm, t=s.t, cpu_cores=np.r_[s.cpu_cores[:split(s, 0.5)],
                                                                    np.zeros(len(s) - split(s, 0.5))],
                                 mem_gib=s.mem_gib, cpu_capacity=s.cpu_capacity, mem_capacity=s.mem_capacity)
                 for vm, s in series.items()}
    again = replay_report(scrambled)
    assert [x["cpu_cores"] for x in again["recommendations"]] == [recs[vm]["cpu_cores"] for vm in series]
    assert again["summary"]["cpu"]["recommender"]["under_provisioned_pct"] == 0.0
