"""MLflow recording: one experiment per study, a parent run, one nested run per trial.

Uses :class:`mlflow.MlflowClient` explicitly (no fluent global state), so the
service and several studies can share a process. The tracking URI is the local
SQLite store under the data directory by default, or any MLflow server.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

__all__ = ["Tracker"]

log = logging.getLogger(__name__)


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[k] = float(v)
    return out


class Tracker:
    """Records a study in MLflow.

    Args:
        tracking_uri: e.g. ``sqlite:////home/u/.local/share/novatune/mlflow.db``
            or ``http://127.0.0.1:5000``.
        artifact_root: folder for the study's artifacts when the store is local.
    """

    def __init__(self, tracking_uri: str, *, artifact_root: Path | None = None) -> None:
        import mlflow  # heavy: imported only when a study is tracked

        self._mlflow = mlflow
        self.client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None

    def start_study(self, study: str, *, description: str, tags: dict[str, str]) -> str:
        name = f"novatune/{study}"
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = (self.artifact_root / study).as_uri() if self.artifact_root else None
            self.experiment_id = self.client.create_experiment(
                name,
                artifact_location=location,
                tags={"novatune.study": study, "mlflow.note.content": description or f"novatune study {study}"},
            )
        else:
            self.experiment_id = exp.experiment_id
        run = self.client.create_run(
            self.experiment_id, run_name=f"{study} (study)", tags={"novatune.kind": "study", **tags}
        )
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def log_trial(
        self,
        number: int,
        *,
        params: dict[str, Any],
        metrics: dict[str, Any],
        tags: dict[str, str],
        artifacts: list[Path] = (),  # type: ignore[assignment]
    ) -> str:
        """One finished run per trial, nested under the study run."""
        from mlflow.entities import Metric, Param, RunTag

        assert self.experiment_id is not None and self.parent_run_id is not None, "start_study first"
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number:03d}",
            tags={"mlflow.parentRunId": self.parent_run_id, "novatune.kind": "trial", "trial": str(number), **tags},
        )
        rid = run.info.run_id
        ts = int(run.info.start_time)
        self.client.log_batch(
            rid,
            metrics=[Metric(k, v, ts, 0) for k, v in _finite(metrics).items()],
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        for path in artifacts:
            self.client.log_artifact(rid, str(path))
        status = "FAILED" if tags.get("state") == "fail" else "FINISHED"
        self.client.set_terminated(rid, status=status)
        return rid

    def log_study_step(self, metrics: dict[str, Any], *, step: int) -> None:
        """Step metrics on the study run while it runs (e.g. convergence progress per trial)."""
        from mlflow.entities import Metric

        if self.parent_run_id is None:
            return
        ts = int(time.time() * 1000)
        batch = [Metric(k, v, ts, step) for k, v in _finite(metrics).items()]
        if batch:
            self.client.log_batch(self.parent_run_id, metrics=batch)

    def set_study_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        if self.parent_run_id is not None and tags:
            self.client.log_batch(self.parent_run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])

    def finish_study(
        self,
        *,
        metrics: dict[str, Any],
        step_metrics: dict[str, list[float]],
        artifacts: list[Path],
        tags: dict[str, str],
        status: str = "FINISHED",
    ) -> None:
        from mlflow.entities import Metric, RunTag

        rid = self.parent_run_id
        if rid is None:
            return
        batch = [Metric(k, v, 0, 0) for k, v in _finite(metrics).items()]
        for key, series in step_metrics.items():
            batch += [Metric(key, float(v), 0, i) for i, v in enumerate(series) if math.isfinite(float(v))]
        for i in range(0, len(batch), 900):
            self.client.log_batch(rid, metrics=batch[i : i + 900])
        self.client.log_batch(rid, tags=[RunTag(k, str(v)) for k, v in tags.items()])
        for path in artifacts:
            self.client.log_artifact(rid, str(path))
        self.client.set_terminated(rid, status=status)
