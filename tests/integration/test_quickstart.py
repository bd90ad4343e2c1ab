"""The README's main job, as a new user runs it (its duration is reported, not asserted)."""

import time

import pytest

from tests.integration.conftest import needs_root, novatune, snapshot


@needs_root
@pytest.mark.slow
def test_quickstart(home, capsys):
    before = snapshot()
    t0 = time.monotonic()
    proc = novatune("quickstart", home=home, timeout=600)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert snapshot() == before
    out = proc.stdout
    assert "Pareto front of quickstart" in out and '"chosen_by"' in out and "mlflow ui --backend-store-uri" in out

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")
    exp = client.get_experiment_by_name("novatune/quickstart")
    runs = client.search_runs([exp.experiment_id], max_results=200)
    trials = [r for r in runs if r.data.tags.get("novatune.kind") == "trial"]
    assert len(trials) >= 15
    assert all(r.data.params and "throughput_rps" in r.data.metrics for r in trials)
    study = next(r for r in runs if r.data.tags.get("novatune.kind") == "study")
    assert {"pareto_front.png", "convergence.png"} <= {a.path for a in client.list_artifacts(study.info.run_id)}
    with capsys.disabled():
        print(f"\nquickstart: {len(trials)} trials in {elapsed:.0f} s")
