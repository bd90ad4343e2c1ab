"""``novatune bench gain`` for real: a study's choice against the defaults and two stock TuneD profiles (read
from Debian's tuned package, unpacked by .ci/run into $TUNED_ROOT), on a stress-ng workload; every arm
measured in every round, the machine left as found, also after a kill -9 and ``novatune recover``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REPO, needs_root, novatune, snapshot

pytestmark = [pytest.mark.slow, needs_root,
              pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed")]

SPEC = {
    "name": "gain-cpu",
    "workload": {"kind": "stress-ng", "stressor": "cpu", "workers": 1},
    "knobs": {"sizing.vcpus": {"low": 0.5, "high": 2.0}},
    "objectives": {"throughput": "maximize", "cost_usd_per_hour": "minimize"},
    "trial": {"warmup_s": 0.3, "measure_s": 1.0, "repeats": 1},
    "budget": {"trials": 2},
    "sampler": {"name": "random", "seed": 1},
}


@pytest.fixture()
def tuned_dirs(monkeypatch: pytest.MonkeyPatch) -> None:
    root = os.environ.get("TUNED_ROOT")
    if not root:
        pytest.fail("TUNED_ROOT is not set: .ci/run unpacks Debian's tuned package there (run the suite with it)")
    monkeypatch.setenv("NOVATUNE_TUNED_PROFILE_DIRS", json.dumps([str(Path(root) / "usr/lib/tuned")]))


def _spec(tmp_path: Path) -> Path:
    p = tmp_path / "gain-cpu.yaml"
    p.write_text(yaml.safe_dump(SPEC, sort_keys=False))  # the first objective is the primary metric
    return p


def test_every_arm_in_every_round_and_the_machine_as_found(home: Path, tmp_path: Path, tuned_dirs: None) -> None:
    spec = _spec(tmp_path)
    novatune("study", "run", str(spec), home=home, check=True, timeout=300)
    before = snapshot()
    proc = novatune("bench", "gain", str(spec), "--profiles", "latency-performance,virtual-guest,no-such-profile",
                    "--rounds", "2", "--json", home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before, "a knob or cgroup was left changed"
    doc = json.loads(proc.stdout)
    assert list(doc["arms"]) == ["defaults", "latency-performance", "virtual-guest", "novatune"]
    assert "no TuneD profile 'no-such-profile'" in doc["not_applied"]["no-such-profile"]
    lp = doc["arms"]["latency-performance"]
    assert lp["knobs"]["vm.swappiness"] == 10 and lp["knobs"]["vm.dirty_ratio"] == 10
    assert any(s.startswith("cpufreq.governor=performance") for s in lp["skipped"])  # no cpufreq in this VM
    assert doc["arms"]["virtual-guest"]["knobs"]["vm.dirty_ratio"] == 30  # its own value over the included one
    best = doc["best_profile"]
    assert best in ("latency-performance", "virtual-guest")
    # 2 screening rounds of every arm, then 2 confirmation rounds of the defaults, the best profile, novatune
    assert {n: a["rounds"] for n, a in doc["arms"].items()} == {
        "defaults": 4, "latency-performance": 4 if best == "latency-performance" else 2,
        "virtual-guest": 4 if best == "virtual-guest" else 2, "novatune": 4}
    assert all(a["median"] > 0 for a in doc["arms"].values())
    assert doc["arms"]["novatune"]["vs_defaults"]["rounds"] == 4
    assert doc["novatune_vs_best_profile"]["rounds"] == 2 and doc["compared_on"] == "rounds 3-4 (confirmation)"
    assert doc["metric"] == "throughput" and doc["verdict"]
    listed = json.loads(novatune("bench", "gains", "--json", home=home, check=True).stdout)
    assert [g["id"] for g in listed] == [doc["id"]]


def test_a_kill_mid_run_is_put_back_by_recover(home: Path, tmp_path: Path, tuned_dirs: None) -> None:
    spec = _spec(tmp_path)
    novatune("study", "run", str(spec), home=home, check=True, timeout=300)
    before = snapshot()
    env = {**os.environ, "NOVATUNE_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "bench", "gain", str(spec), "--profiles",
                             "latency-performance", "--rounds", "20"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while Path("/proc/sys/vm/swappiness").read_text() == before["/proc/sys/vm/swappiness"]:
            assert proc.poll() is None and time.monotonic() < deadline, "latency-performance was never applied"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert snapshot() != before  # killed with latency-performance's values in place
    novatune("recover", home=home, check=True)
    assert snapshot() == before


def test_a_study_tries_what_each_stock_profile_sets_first(home: Path, tmp_path: Path, tuned_dirs: None) -> None:
    import optuna

    spec = {**SPEC, "name": "stock-first", "objectives": {"throughput": "maximize"}, "budget": {"trials": 5},
            "knobs": {"vm.swappiness": {"low": 1, "high": 100}, "vm.dirty_ratio": {"low": 5, "high": 60},
                      "vm.dirty_background_ratio": {"low": 1, "high": 30}},
            "warm_start": {"stock_profiles": True}}
    path = tmp_path / "stock-first.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    before = snapshot()
    proc = novatune("study", "run", str(path), home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before
    study = optuna.load_study(study_name="stock-first", storage=f"sqlite:///{home / 'optuna.db'}")
    stock = study.user_attrs["stock_profiles"]
    # Debian's profiles on these three knobs: network-latency repeats latency-performance, network-throughput
    # repeats throughput-performance, balanced sets none of them
    assert stock["tried"] == ["throughput-performance", "latency-performance", "virtual-guest"]
    assert stock["not_tried"]["network-latency"] == "the same point as the values found or an earlier profile"
    assert stock["not_tried"]["balanced"] == "sets none of the study's knobs"
    trials = study.trials
    assert trials[0].user_attrs.get("baseline") is True
    assert [t.user_attrs.get("stock_profile") for t in trials[1:4]] == stock["tried"]
    assert [(t.params["vm.swappiness"], t.params["vm.dirty_ratio"], t.params["vm.dirty_background_ratio"])
            for t in trials[1:4]] == [(10, 40, 10), (10, 10, 3), (30, 30, 10)]
