"""``/bench`` (read-only) and the latest run's gauges on ``/metrics``, over stored runs (nothing measured)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from experiments.bench.store import save_run
from experiments.service import create_app
from experiments.settings import Paths

LOCAL = "http://127.0.0.1"
BASE = "bench-20260101-000000-aaaa"
SLOW = "bench-20260102-000000-bbbb"


def _run(rid: str, time: str, values: list[float]) -> dict:
    return {"id": rid, "time": time, "suite": {"name": "quick"}, "machine": {"hostname": "vm"},
            "kernel": {"release": "6.1"}, "knobs": {}, "cpu_quota": None,
            "benchmarks": {"cpu": {"values": values, "median": sorted(values)[len(values) // 2],
                                   "direction": "maximize", "unit": "bogo-ops/s", "min_effect": 0.05},
                           "tiny": {"values": [1.0], "median": 1.0, "direction": "maximize", "unit": "x"}}}


@pytest.fixture()
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    paths = Paths(tmp_path / "home").ensure()
    base = [100.0, 101.0, 99.0, 100.0, 100.5]
    save_run(paths, _run(BASE, "2026-01-01T00:00:00+00:00", base))
    save_run(paths, _run(SLOW, "2026-01-02T00:00:00+00:00", [x * 0.9 for x in base]))
    with TestClient(create_app(paths), base_url=LOCAL) as c:
        yield c


def test_runs_and_one_run(client):
    r = client.get("/bench/runs")
    assert r.status_code == 200
    assert [x["id"] for x in r.json()] == [BASE, SLOW]
    one = client.get(f"/bench/runs/{BASE}")
    assert one.status_code == 200 and one.json()["benchmarks"]["cpu"]["median"] == 100.0


@pytest.mark.parametrize("url", ["/bench/runs/bench-20990101-000000-ffff", "/bench/runs/nope",
                                 "/bench/compare?base=nope", f"/bench/compare?base={BASE}&run=nope"])
def test_unknown_ids_are_404(client, url):
    r = client.get(url)
    assert r.status_code == 404
    assert r.json()["error"] == "BenchNotFound"


def test_compare_finds_the_regression_and_is_strict_json(client):
    r = client.get(f"/bench/compare?base={BASE}")  # the newest other run: SLOW
    assert r.status_code == 200
    rep = r.json()
    assert rep["run"] == SLOW and rep["regressions"] == ["cpu"]
    assert rep["benchmarks"]["tiny"]["change_ci"] == [None, None]  # one window: no interval, no NaN in JSON
    assert client.get(f"/bench/compare?base={SLOW}&run={BASE}").json()["improvements"] == ["cpu"]


def test_metrics_show_the_latest_run(client):
    fams = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    medians = {s.labels["benchmark"]: s.value for s in fams["novatune_bench_median"].samples}
    assert medians == {"cpu": pytest.approx(90.0), "tiny": 1.0}
    info = fams["novatune_bench_run_info"].samples
    assert [s.labels["id"] for s in info] == [SLOW]
    assert fams["novatune_bench_store_up"].samples[0].value == 1.0


@pytest.mark.slow
def test_mlflow_gets_one_run_per_bench_run(tmp_path, monkeypatch):
    import mlflow

    from experiments.bench.tracking import EXPERIMENT, log_run

    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "h"))
    paths = Paths(tmp_path / "h").ensure()
    doc = {**_run(BASE, "2026-01-01T00:00:00+00:00", [1.0, 2.0, 3.0]), "elapsed_s": 5.0,
           "suite": {"name": "quick", "windows": 3, "window_s": 2.0}, "groups": ["cpu"]}
    got = log_run(paths, doc)
    assert "error" not in got, got
    client = mlflow.MlflowClient(tracking_uri=got["tracking_uri"])
    assert client.get_experiment(got["experiment_id"]).name == EXPERIMENT
    run = client.get_run(got["run_id"])
    assert run.data.metrics["cpu"] == 2.0
    assert [m.value for m in client.get_metric_history(got["run_id"], "cpu_window")] == [1.0, 2.0, 3.0]
    assert run.data.tags["novatune.bench_id"] == BASE and run.info.status == "FINISHED"
