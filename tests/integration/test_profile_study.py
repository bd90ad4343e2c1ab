"""A study with a ``profile:`` section, through the CLI: every trial's window is profiled with py-spy, the
trial's MLflow run holds its flamegraph and its diff against the baseline, the profiles are stored with the
study's labels, and the summary names the hotspots that changed most from the baseline to the choice.
"""

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import needs_root, novatune, snapshot

SPEC = {
    "name": "profiled",
    "workload": {"kind": "oltp", "workers": 2, "clients": 4},
    "knobs": {"sizing.vcpus": {"low": 0.3, "high": 2.0}, "vm.swappiness": {"low": 1, "high": 100}},
    "objectives": {"throughput_rps": "maximize", "cost_usd_per_hour": "minimize"},
    "constraints": {"latency_p95_ms": {"max": 2000}},
    "trial": {"warmup_s": 0.5, "measure_s": 4, "repeats": 1},
    "budget": {"trials": 3, "timeout_s": 180},
    "sampler": {"name": "random", "seed": 5},
    "profile": {"mode": "cpu", "rate_hz": 50},
}


@needs_root
@pytest.mark.slow
def test_a_profiled_study_logs_flamegraphs_diffs_and_the_changed_hotspots(tmp_path, home):
    spec = tmp_path / "profiled.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    before = snapshot()
    proc = novatune("study", "run", str(spec), home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before, "a knob or cgroup was left changed"

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("novatune/profiled")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    trials = {int(r.data.tags["trial"]): r for r in runs if r.data.tags.get("novatune.kind") == "trial"}
    study = next(r for r in runs if r.data.tags.get("novatune.kind") == "study")
    assert sorted(trials) == [0, 1, 2]
    for number, run in trials.items():
        assert "profile_note" not in run.data.tags, run.data.tags.get("profile_note")
        names = {a.path for a in client.list_artifacts(run.info.run_id, "profile")}
        want = {f"profile/trial-{number:03d}-flamegraph.svg", f"profile/trial-{number:03d}-flamegraph.html"}
        if number:
            want |= {f"profile/trial-{number:03d}-diff-vs-baseline.{s}" for s in ("svg", "html", "json")}
        assert want <= names, (number, names)
        svg = client.download_artifacts(run.info.run_id, f"profile/trial-{number:03d}-flamegraph.svg", str(tmp_path))
        titles = [t.text for t in ET.parse(svg).iter("{http://www.w3.org/2000/svg}title")]
        assert any("oltp_server.py" in (t or "") for t in titles), "the flamegraph shows the tuned service's code"
        if number:
            got = client.download_artifacts(run.info.run_id, f"profile/trial-{number:03d}-diff-vs-baseline.json",
                                            str(tmp_path))
            d = json.loads(Path(got).read_text())
            assert d["functions"] and {"function", "base_pct", "target_pct", "delta_pct"} <= set(d["functions"][0])
            assert abs(sum(f["delta_pct"] for f in d["functions"])) < 1.0  # self shares sum to 100 on both sides

    # the store holds one profile per trial, labelled with the study and the trial
    listed = json.loads(novatune("profile", "list", "--json", "--label", "study=profiled", home=home,
                                 check=True).stdout)
    assert sorted(int(p["labels"]["trial"]) for p in listed) == [0, 1, 2]
    assert {p["id"] for p in listed} == {r.data.tags["profile_id"] for r in trials.values()}
    assert all(p["labels"]["config_hash"] and p["mode"] == "cpu" and p["rate_hz"] == 50 for p in listed)

    # the summary: hotspots that changed most between the baseline and the chosen trial
    shown = json.loads(novatune("study", "show", "profiled", "--json", home=home, check=True).stdout)
    chosen = shown["choice"]["trial"]
    changes = shown["profile_changes"]
    if chosen == 0:
        assert changes is not None and changes["changed"] == []
    else:
        assert changes["chosen_trial"] == chosen and changes["baseline_trial"] == 0
        assert "Profile: what changed most from the baseline" in proc.stdout
        assert study.data.tags.get("profile_changes", "") != "" or not changes["changed"]
    study_files = {a.path for a in client.list_artifacts(study.info.run_id, "profile")}
    assert "profile/profile-changes.json" in study_files
