"""Trial 0 is the machine as found, measured even when a current value lies outside the spec's range: the
study compares with it, searches only inside the range, and leaves the value as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import needs_root, novatune, snapshot

pytestmark = [pytest.mark.slow, needs_root,
              pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed")]


@pytest.mark.parametrize("sampler", ["tpe", "auto"])
def test_a_baseline_outside_the_range_is_measured_and_the_search_stays_inside(home: Path, tmp_path: Path,
                                                                              sampler: str) -> None:
    current = int(Path("/proc/sys/vm/swappiness").read_text())
    low, high = (current + 10, 100) if current <= 50 else (1, current - 10)  # a range without the current value
    spec = {"name": "outside", "workload": {"kind": "stress-ng", "stressor": "cpu", "workers": 1},
            "knobs": {"vm.swappiness": {"low": low, "high": high}}, "objectives": {"throughput": "maximize"},
            "trial": {"warmup_s": 0, "measure_s": 0.5, "repeats": 1}, "budget": {"trials": 6},
            "sampler": {"name": sampler, "seed": 3}}
    path = tmp_path / "outside.yaml"
    path.write_text(yaml.safe_dump(spec))
    before = snapshot()
    proc = novatune("study", "run", str(path), home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before
    shown = json.loads(novatune("study", "show", "outside", "--json", home=home, check=True).stdout)
    states = [(t["state"], t["knobs"]["vm.swappiness"]) for t in shown["trials"]]
    assert states[0] == ("complete", current), states
    assert all(s == "complete" and low <= v <= high for s, v in states[1:]), states
    assert shown["versus_baseline"]["trial"] == 0
