"""A real study justifies its choice before it exports: a CPU quota that sets the cost stays, a swappiness
that changes nothing on a CPU stressor goes back, and the machine is left as found."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import needs_root, novatune, snapshot

pytestmark = [pytest.mark.slow, needs_root,
              pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed")]

SPEC = {
    "name": "justify-real",
    "workload": {"kind": "stress-ng", "stressor": "cpu", "workers": 1},
    "knobs": {"sizing.vcpus": {"low": 0.2, "high": 1.0}, "vm.swappiness": {"low": 1, "high": 100}},
    "objectives": {"throughput": "maximize", "cost_usd_per_hour": "minimize"},
    "trial": {"warmup_s": 0.5, "measure_s": 1.5, "repeats": 1},
    "budget": {"trials": 3},
    "cost": {"profile": "opencost-builtin-default", "pricing_model": "on_demand", "memory_gib": 1.0},
    "sampler": {"name": "random", "seed": 5},
    # the cheapest trial: a quota below 1 vCPU, and a swappiness other than the machine's
    "choose": {"rule": "best", "target": "cost_usd_per_hour"},
    "justify": {"rounds": 3, "alpha": 0.01},  # a swappiness kept by chance would fail this test 1 % of runs
}


def test_the_choice_keeps_the_quota_puts_swappiness_back_and_exports_only_the_quota(
        home: Path, tmp_path: Path, justify_on: None) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    before = snapshot()
    proc = novatune("study", "run", str(spec), home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "justified by" in proc.stderr and "put back vm.swappiness" in proc.stderr, proc.stderr
    assert snapshot() == before, "a knob or cgroup was left changed"

    record = json.loads((home / "runs" / "justify-real" / "justify.json").read_text())
    knobs = record["knobs"]
    assert knobs["sizing.vcpus"]["kept"] and knobs["sizing.vcpus"]["baseline"] == 2.0
    assert knobs["sizing.vcpus"]["reason"].startswith("kept: cost_usd_per_hour -")
    assert not knobs["vm.swappiness"]["kept"]
    assert record["measurements"] == 3 * 3  # the choice and each knob put back, three rounds
    rows = (home / "runs" / "justify-real" / "justify.csv").read_text().splitlines()
    assert len(rows) == 1 + 9 and rows[0].startswith("round,put_back,throughput")

    doc = json.loads(novatune("study", "export", "justify-real", "--format", "json", home=home, check=True).stdout)
    assert doc["trial"] == record["trial"] != record["of_trial"]  # the reduced choice, measured as a trial
    assert list(doc["knobs"]) == ["sizing.vcpus"] and doc["knobs"]["sizing.vcpus"] < 1.0
    assert doc["evidence"]["sizing.vcpus"].startswith("cost_usd_per_hour -")
    assert list(doc["left_as_found"]) == ["vm.swappiness"]
    shown = json.loads(novatune("study", "show", "justify-real", "--json", home=home, check=True).stdout)
    reduced = next(t for t in shown["trials"] if t["trial"] == record["trial"])
    assert reduced["state"] == "complete"
    assert reduced["knobs"]["vm.swappiness"] == int(before["/proc/sys/vm/swappiness"])  # put back
