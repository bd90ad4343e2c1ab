"""One real study of a few short trials on this machine, through the CLI.

Real kernel files (through the journal, always restored), a real workload on
127.0.0.1, real Optuna and MLflow SQLite stores in a temporary data directory.
"""

import json

import pytest
import yaml

from tests.integration.conftest import needs_root, novatune, snapshot

SPEC = {
    "name": "e2e",
    "description": "integration test study",
    "workload": {"kind": "oltp", "workers": 2, "clients": 4},
    "knobs": {
        "sizing.vcpus": {"low": 0.2, "high": 2.0},
        "affinity.cpus": {"low": 1, "high": 2},
        "vm.swappiness": {"low": 1, "high": 100},
        "vm.dirty_ratio": {"low": 10, "high": 40},
        "vm.dirty_background_ratio": {"low": 2, "high": 20},
        "thp.enabled": {"choices": ["always", "madvise", "never"]},
    },
    "objectives": {"throughput_rps": "maximize", "cost_usd_per_hour": "minimize"},
    "constraints": {"latency_p95_ms": {"max": 1000}},
    "trial": {"warmup_s": 0.5, "measure_s": 1.5, "repeats": 1},
    "budget": {"trials": 4, "timeout_s": 120},
    "sampler": {"name": "random", "seed": 3},
}


@needs_root
@pytest.mark.slow
def test_study_end_to_end(tmp_path, home, plots_on):
    spec = tmp_path / "e2e.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    before = snapshot()
    proc = novatune("study", "run", str(spec), home=home, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before, "a knob or cgroup was left changed"
    assert "every tuned knob reads as before the study" in proc.stdout
    # a clean study leaves nothing open in the journal: recover has nothing to do
    rec = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
    assert (rec["runs"], rec["knobs"], rec["killed"]) == ([], [], []), rec
    assert "Against the baseline (trial 0" in proc.stdout  # the summary compares the choice with the baseline

    shown = json.loads(novatune("study", "show", "e2e", "--json", home=home, check=True).stdout)
    trials = shown["trials"]
    assert len(trials) == 4
    assert all(t["state"] == "complete" for t in trials), trials
    assert trials[0]["knobs"]["vm.swappiness"] == int(before["/proc/sys/vm/swappiness"])  # baseline first
    for t in trials:
        k = t["knobs"]
        assert k["vm.dirty_background_ratio"] < k["vm.dirty_ratio"]
        assert t["values"]["throughput_rps"] > 0

    exported = json.loads(novatune("study", "export", "e2e", "--format", "json", home=home, check=True).stdout)
    assert exported["study"] == "e2e" and set(exported["knobs"]) == set(SPEC["knobs"])
    sysctl = novatune("study", "export", "e2e", "--format", "sysctl", home=home, check=True).stdout
    keys = [line.split(" = ")[0] for line in sysctl.splitlines() if line and not line.startswith("#")]
    assert sorted(keys) == ["vm.dirty_background_ratio", "vm.dirty_ratio", "vm.swappiness"]

    # MLflow: one experiment, a study run with both plots, one nested run per trial
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("novatune/e2e")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], max_results=100)
    study_runs = [r for r in runs if r.data.tags.get("novatune.kind") == "study"]
    trial_runs = [r for r in runs if r.data.tags.get("novatune.kind") == "trial"]
    assert len(study_runs) == 1 and len(trial_runs) == 4
    parent = study_runs[0].info.run_id
    for r in trial_runs:
        assert r.data.tags["mlflow.parentRunId"] == parent
        assert set(SPEC["knobs"]) <= set(r.data.params)
        assert {"throughput_rps", "cost_usd_per_hour", "latency_p95_ms", "host_cpu_util_pct"} <= set(r.data.metrics)
    names = {a.path for a in client.list_artifacts(parent)}
    assert {"plots", "export-knee.json"} <= names
    plots = {a.path for a in client.list_artifacts(parent, "plots")}
    assert {f"plots/{p}.{ext}" for p in ("pareto_front", "convergence") for ext in ("png", "html")} <= plots
    # each trial run lasts as long as its trial did (logged after it, with its own start and end)
    for r in trial_runs:
        assert r.info.end_time - r.info.start_time >= 1000 * SPEC["trial"]["measure_s"], r.info
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens it on its runs
    history = client.get_metric_history(parent, "hypervolume_per_trial")
    assert len(history) == 4

    # each trial's collector series (>= 40 named metrics) and workload timeline are artifacts of its run
    assert "series-units.csv" in names
    import pandas as pd

    for r in trial_runs:
        arts = {a.path for a in client.list_artifacts(r.info.run_id)}
        n = int(r.data.tags["trial"]) if "trial" in r.data.tags else None
        series = [a for a in arts if a.endswith("-series.csv")]
        assert len(series) == 1 and any(a.endswith("-workload.csv") for a in arts), arts
        assert n is None or series[0] == f"trial-{n:03d}-series.csv"
        frame = pd.read_csv(client.download_artifacts(r.info.run_id, series[0], str(tmp_path)), index_col="time")
        assert frame.shape[1] >= 40 and len(frame) >= 2
        assert r.data.metrics["window_samples"] >= 1
        assert r.data.metrics["target_cpu_cores"] > 0  # the workload's own CPU, from its pid tree
