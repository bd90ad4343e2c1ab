"""`novatune recommend` on fixture machines of 1, 2 and 4 NUMA nodes (what this 1-node VM cannot show), with the
evidence; `show` and `accept` refuse in one line (exit 2) what they cannot do, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.settings import Paths
from tests.fixtures.example_machines import MACHINES, build

REPO = Path(__file__).resolve().parents[2]


def cli(paths: Paths, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={"PATH": "/usr/bin:/bin", "NOVATUNE_HOME": str(paths.home),
                                         "COLUMNS": "200"})


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "home")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MACHINES))
def test_recommend_on_fixture_machines_ranks_with_evidence(tmp_path, paths, name) -> None:
    root = build(tmp_path / name, MACHINES[name])
    proc = cli(paths, "recommend", "--root", str(root), "--source", "advisors", "--json")
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    recs = got["recommendations"]
    assert got["root"] == str(root) and recs
    assert [r["rank"] for r in recs] == list(range(1, len(recs) + 1))
    assert [r["score"] for r in recs] == sorted((r["score"] for r in recs), reverse=True)
    assert all(r["evidence"] and (r["changes"] or r["manual"]) for r in recs)
    advisors = {r["advisor"] for r in recs}
    if name == "one-node":
        assert "numa" not in advisors  # one node: nothing to bind
    else:
        bind = next(r for r in recs if r["advisor"] == "numa" and "postgres" in r["title"])
        assert "node 0" in bind["title"] and any(e["what"].startswith("remote share") for e in bind["evidence"])
    assert {"io", "pinning"} <= advisors
    # no change advised on the management interface (eth0 carries the default route)
    assert not any("eth0" in c["knob"] for r in recs for c in r["changes"])
    text = cli(paths, "recommend", "--root", str(root), "--source", "advisors")
    assert text.returncode == 0 and "evidence" in text.stdout and "1. " in text.stdout


@pytest.mark.slow
def test_show_and_accept_refuse_in_one_line(tmp_path, paths) -> None:
    root = build(tmp_path / "m", 2)
    recs = json.loads(cli(paths, "recommend", "--root", str(root), "--source", "advisors", "--json").stdout)
    first = recs["recommendations"][0]
    shown = cli(paths, "recommend", "show", first["id"])
    assert shown.returncode == 0 and first["title"] in shown.stdout and "evidence:" in shown.stdout
    unknown = cli(paths, "recommend", "show", "0000000000")
    assert unknown.returncode == 2 and "no recommendation '0000000000'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    refused = cli(paths, "recommend", "accept", first["id"], "--validate", "spec.yaml")
    assert refused.returncode == 2 and f"collected from the tree {root}" in refused.stderr
    assert not (paths.home / "journal.jsonl").exists() and not (paths.home / "validations").exists()
