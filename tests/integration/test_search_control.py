"""Search control on real studies: convergence stops early (and MLflow says why), the trust
region bounds every step, a second study of the same target starts from the first one's best."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.integration.conftest import needs_root, novatune, snapshot

pytestmark = [pytest.mark.slow, needs_root]

SPEC = {
    "name": "ctl",
    "workload": {"kind": "oltp", "workers": 2, "clients": 4},
    "knobs": {
        "vm.swappiness": {"low": 1, "high": 100},
        "vm.dirty_ratio": {"low": 10, "high": 40},
        "vm.dirty_background_ratio": {"low": 2, "high": 20},
        "sizing.vcpus": {"low": 0.5, "high": 2.0},
    },
    "objectives": {"throughput_rps": "maximize", "cost_usd_per_hour": "minimize"},
    "constraints": {"latency_p95_ms": {"max": 1000}},
    "trial": {"warmup_s": 0.3, "measure_s": 0.8},
    "sampler": {"name": "random", "seed": 5},
}


def _mlflow_study_run(home, study):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name(f"novatune/{study}")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    return client, next(r for r in runs if r.data.tags.get("novatune.kind") == "study")


def test_convergence_stops_early_trust_region_bounds_steps_and_warm_start_reuses_the_best(tmp_path, home, plots_on):
    spec = {**SPEC, "budget": {"trials": 30},
            "convergence": {"patience": 3, "min_improvement": 0.5},  # 50 %: nothing random beats it for long
            "trust_region": {"max_step": {"vm.swappiness": 5, "vm.dirty_ratio": 3, "vm.dirty_background_ratio": 2,
                                          "sizing.vcpus": 0.25}},
            "noise": {"remeasure": 1}}
    path = tmp_path / "ctl.yaml"
    path.write_text(yaml.safe_dump(spec))
    before = snapshot()
    proc = novatune("study", "run", str(path), home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before
    assert "stopped: converged: hypervolume improved < 50% over the last 3 trials" in " ".join(proc.stdout.split())

    shown = json.loads(novatune("study", "show", "ctl", "--json", home=home, check=True).stdout)
    trials = shown["trials"]
    searched = [t for t in trials if t["state"] == "complete"]
    assert 4 <= len(trials) < 30, len(trials)  # stopped well before the budget
    assert shown["stop_reason"].startswith("converged: ")
    assert shown["convergence"]["converged"] is True and shown["convergence"]["stops_study"] is True
    assert shown["choice"]["rule"] == "knee"

    # trust region: every searched trial is within the step of the centre it was drawn around
    import optuna

    study = optuna.load_study(study_name="ctl", storage=f"sqlite:///{home / 'optuna.db'}")
    steps = spec["trust_region"]["max_step"]
    checked = 0
    for t in study.trials:
        center = t.user_attrs.get("trust_center")
        if center is None:
            continue  # the baseline, and the re-measurement
        applied = t.user_attrs["applied"]
        for knob, step in steps.items():
            assert abs(applied[knob] - center[knob]) <= step + 1e-9, (t.number, knob, applied, center)
        checked += 1
    assert checked >= 3
    remeasured = [t for t in study.trials if "remeasure_of" in t.user_attrs]
    assert len(remeasured) == 1
    original = study.trials[remeasured[0].user_attrs["remeasure_of"]]
    assert remeasured[0].user_attrs["applied"] == original.user_attrs["applied"]

    # MLflow says why it stopped, and has the convergence curve and the knob importance
    client, run = _mlflow_study_run(home, "ctl")
    assert run.data.tags["stop_reason"].startswith("converged: hypervolume improved < 50%")
    assert len(client.get_metric_history(run.info.run_id, "convergence_progress")) == len(searched) - 1
    assert any(k.startswith("importance.throughput_rps.") for k in run.data.metrics)
    assert "plots/importance.png" in {a.path for a in client.list_artifacts(run.info.run_id, "plots")}

    # a second study of the same target: baseline, then the first study's best (chosen, then its front)
    best = [study.trials[n].user_attrs["applied"] for n in [shown["choice"]["trial"], *shown["choice"]["noisy_front"]]]
    best = [b for b in best if b != study.trials[0].user_attrs["applied"]]  # the baseline runs first anyway
    best = [b for i, b in enumerate(best) if b not in best[:i]]  # the chosen trial is on the front too
    spec2 = {**SPEC, "name": "ctl2", "budget": {"trials": 3}}
    path2 = tmp_path / "ctl2.yaml"
    path2.write_text(yaml.safe_dump(spec2))
    proc = novatune("study", "run", str(path2), home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s2 = optuna.load_study(study_name="ctl2", storage=f"sqlite:///{home / 'optuna.db'}")
    assert s2.trials[0].user_attrs.get("baseline") is True
    if best:
        assert s2.trials[1].user_attrs.get("warm_start") is True
        assert s2.trials[1].user_attrs["applied"] == best[0]
    assert s2.user_attrs["warm_start"] == best[: len(s2.user_attrs["warm_start"])]
    assert snapshot() == before
