"""A benchmark run in MLflow: experiment ``novatune-bench``, one MLflow run per benchmark run.

Per benchmark the median is the metric ``<benchmark>`` and each window ``<benchmark>_window`` at step = window
index; params are the suite, the quota and the machine; tags ``novatune.kind=bench`` and
``novatune.bench_id``; the stored document is the artifact ``bench.json``. The tracking URI is the settings'
``mlflow_tracking_uri`` or the local store of the data directory. MLflow failing never fails a benchmark
run: :func:`log_run` then answers the error, which the run stores.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime
from typing import Any

from experiments.settings import Paths

__all__ = ["EXPERIMENT", "log_run"]

#: the MLflow experiment of every benchmark run
EXPERIMENT = "novatune-bench"

log = logging.getLogger(__name__)


def _uri(paths: Paths) -> str:
    from collectors.errors import NovatuneError
    from experiments.settings import Settings

    try:
        configured = Settings.load().mlflow_tracking_uri
    except NovatuneError:
        configured = None
    return configured or paths.mlflow_uri


def log_run(paths: Paths, doc: dict[str, Any]) -> dict[str, str]:
    """Log the stored run ``doc``; returns ``{"experiment_id", "run_id", "tracking_uri"}``, or ``{"error": ...}``
    when MLflow failed (logged as a warning; never raises)."""
    try:
        return _log(paths, doc)
    except Exception as err:  # noqa: BLE001 - MLflow is a record of the run, not a condition of it
        log.warning("could not log benchmark run %s to MLflow: %s", doc.get("id"), err)
        return {"error": f"{type(err).__name__}: {err}"[:500]}


def _log(paths: Paths, doc: dict[str, Any]) -> dict[str, str]:
    from mlflow.entities import Metric, Param, RunTag

    from experiments.study.tracking import EXPERIMENT_KIND, open_client

    uri = _uri(paths)
    client = open_client(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        location = None if uri.startswith(("http://", "https://")) else (paths.artifacts / "bench").as_uri()
        tags = {"mlflow.note.content": "novatune bench run: one run per benchmark run",
                EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1]}
        exp_id = client.create_experiment(EXPERIMENT, artifact_location=location, tags=tags)
    else:
        exp_id = exp.experiment_id
    started = int(datetime.fromisoformat(doc["time"]).timestamp() * 1000)
    run = client.create_run(exp_id, run_name=doc["id"], start_time=started,
                            tags={"novatune.kind": "bench", "novatune.bench_id": doc["id"]})
    rid = run.info.run_id
    metrics = []
    for name, b in doc["benchmarks"].items():
        if isinstance(b.get("median"), (int, float)) and math.isfinite(b["median"]):
            metrics.append(Metric(name, float(b["median"]), started, 0))
        for i, v in enumerate(b.get("values") or []):
            if isinstance(v, (int, float)) and math.isfinite(v):
                metrics.append(Metric(f"{name}_window", float(v), started, i))
    m, k = doc.get("machine") or {}, doc.get("kernel") or {}
    params = {"suite": doc["suite"]["name"], "windows": doc["suite"]["windows"], "window_s": doc["suite"]["window_s"],
              "groups": ",".join(doc.get("groups", [])), "cpu_quota": doc.get("cpu_quota"),
              "hostname": m.get("hostname"), "cpu_model": m.get("cpu_model"), "cpu_count": m.get("cpu_count"),
              "kernel": k.get("release")}
    client.log_batch(rid, metrics=metrics, params=[Param(p, str(v)[:6000]) for p, v in params.items()],
                     tags=[RunTag("novatune.suite", doc["suite"]["name"])])
    try:
        client.log_dict(rid, doc, "bench.json")
    except Exception as err:  # noqa: BLE001 - the artifact is a copy; the metrics are logged
        log.warning("could not log bench.json of %s: %s", doc["id"], err)
    end = started + int(float(doc.get("elapsed_s") or 0) * 1000)
    client.set_terminated(rid, status="FINISHED", end_time=end)
    return {"experiment_id": str(exp_id), "run_id": rid, "tracking_uri": uri}
