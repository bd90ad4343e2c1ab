"""MLflow recording: one experiment per study, a parent run, one nested run per trial.

Uses :class:`mlflow.MlflowClient` explicitly (no fluent global state), so the
service and several studies can share a process. The tracking URI is the local
SQLite store under the data directory by default, or any MLflow server
(``http(s)://``), whose own artifact store then holds the artifacts.

Layout: experiment ``novatune/<study>`` (description in ``mlflow.note.content``; tagged
``mlflow.experimentKind=custom_model_development`` so that the MLflow 3 UI opens it on its
runs, not on its GenAI pages),
one parent run tagged ``novatune.kind=study``, one nested run per trial tagged
``novatune.kind=trial`` and ``mlflow.parentRunId``. A study resumed in a new
process (:meth:`Tracker.resume_study`) reopens the same parent run.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from collectors.errors import NovatuneError

__all__ = ["Artifact", "Tracker", "TrackingStoreError", "is_remote_uri", "open_client"]

#: a file or directory logged at the run's root, or ``(path, artifact_dir)`` logged under ``artifact_dir``
Artifact = Path | tuple[Path, str]

_REMOTE_SCHEMES = ("http://", "https://", "databricks")

#: the MLflow 3 UI opens an experiment by this tag: without it a new experiment shows the GenAI pages
#: (traces, evaluation) and no runs; this kind makes it a training experiment (runs, charts, artifacts)
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def _key(name: str) -> str:
    """An MLflow key for ``name``: MLflow refuses ``@``, which ``block.@target.*`` knobs have
    (``block.at-target.read_ahead_kb``)."""
    return name.replace("@", "at-")


def is_remote_uri(uri: str) -> bool:
    """True for a tracking server (``http(s)://``, Databricks): it chooses where artifacts go."""
    return uri.strip().lower().startswith(_REMOTE_SCHEMES)

log = logging.getLogger(__name__)


class TrackingStoreError(NovatuneError):
    """The MLflow store cannot be opened by this MLflow (a database schema it does not know): exit 2, and 409
    from the API (the host's store, not the request, is what must change)."""

    http_status = 409


def open_client(uri: str) -> Any:
    """An :class:`mlflow.MlflowClient` on ``uri`` (constructing it opens the store and checks its schema).

    MLflow upgrades a store an older MLflow wrote, but refuses one a newer MLflow wrote (after a downgrade,
    or two environments sharing one data directory) with "out-of-date database schema": that becomes a
    :class:`TrackingStoreError` that says which side is newer and what to do, before anything is changed.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
    except MlflowException as err:
        text = str(err)
        if "database schema" not in text:
            raise
        found = re.search(r"found version (\w+), but expected (\w+)", text)
        revs = f" (its schema {found[1]}; this MLflow's is {found[2]})" if found else ""
        raise TrackingStoreError(
            f"the MLflow store {uri} was written by a newer MLflow than the one installed here "
            f"({mlflow.__version__}){revs}: upgrade MLflow in this environment (pip install -U 'mlflow>=3.1,<4') "
            "or set NOVATUNE_MLFLOW_TRACKING_URI to another store; nothing was changed") from None
    return client


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
        artifact_root: folder for the study's artifacts when the store is local; ignored for
            a remote server (``http(s)://``), which keeps artifacts in its own default
            location (``--default-artifact-root`` / ``--artifacts-destination``), since a
            path on this host means nothing to the server or to other clients.
    """

    def __init__(self, tracking_uri: str, *, artifact_root: Path | None = None) -> None:
        import mlflow  # heavy: imported only when a study is tracked

        self._mlflow = mlflow
        self.client = open_client(tracking_uri)
        self.tracking_uri = tracking_uri
        self.artifact_root = artifact_root
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None

    def start_study(self, study: str, *, description: str, tags: dict[str, str]) -> str:
        name = f"novatune/{study}"
        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            local = self.artifact_root is not None and not is_remote_uri(self.tracking_uri)
            location = (self.artifact_root / study).as_uri() if local and self.artifact_root else None
            self.experiment_id = self.client.create_experiment(
                name,
                artifact_location=location,
                tags={"novatune.study": study, "mlflow.note.content": description or f"novatune study {study}",
                      EXPERIMENT_KIND[0]: EXPERIMENT_KIND[1]},
            )
        else:
            self.experiment_id = exp.experiment_id
            self._set_kind(exp)
        run = self.client.create_run(
            self.experiment_id, run_name=f"{study} (study)", tags={"novatune.kind": "study", **tags}
        )
        self.parent_run_id = run.info.run_id
        return self.parent_run_id

    def _set_kind(self, exp: Any) -> None:
        """Tag an experiment made before the tag existed (or by someone else) as a training experiment."""
        if exp.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
            self.client.set_experiment_tag(exp.experiment_id, *EXPERIMENT_KIND)

    def resume_study(self, study: str, *, tags: dict[str, str]) -> bool:
        """Reopen the parent run of study ``study`` (an interrupted study continued by a new process).

        Finds experiment ``novatune/<study>`` and its newest active run tagged
        ``novatune.kind=study``, sets it back to RUNNING, adds ``tags`` (plus
        ``novatune.resumed=<count>``) and makes it the run later calls log to. Returns False,
        changing nothing, when there is no such experiment or run (or the experiment was
        deleted): the caller then calls :meth:`start_study`.
        """
        from mlflow.entities import RunTag, ViewType

        exp = self.client.get_experiment_by_name(f"novatune/{study}")
        if exp is None or exp.lifecycle_stage != "active":
            return False
        runs = self.client.search_runs(
            [exp.experiment_id],
            filter_string="tags.`novatune.kind` = 'study'",
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        if not runs:
            return False
        run = runs[0]
        rid = run.info.run_id
        resumed = int(run.data.tags.get("novatune.resumed", "0") or 0) + 1
        self.client.update_run(rid, status="RUNNING")
        batch = {**tags, "novatune.resumed": str(resumed)}
        self.client.log_batch(rid, tags=[RunTag(_key(k), str(v)[:5000]) for k, v in batch.items()])
        self.experiment_id = exp.experiment_id
        self._set_kind(exp)
        self.parent_run_id = rid
        log.info("resumed MLflow run %s of study %s (resume #%d)", rid, study, resumed)
        return True

    def _log_artifacts(self, run_id: str, artifacts: Sequence[Artifact]) -> list[str]:
        """Log each file or directory; one that fails is reported, the others are still logged."""
        failed = []
        for item in artifacts:
            path, under = (item if isinstance(item, tuple) else (item, None))
            path = Path(path)
            try:
                if path.is_dir():
                    self.client.log_artifacts(run_id, str(path), artifact_path=under)
                else:
                    self.client.log_artifact(run_id, str(path), artifact_path=under)
            except Exception as err:  # noqa: BLE001 - an artifact must not lose the run's status
                log.warning("could not log artifact %s to run %s: %s", path, run_id, err)
                failed.append(str(path))
        return failed

    def log_trial(
        self,
        number: int,
        *,
        params: dict[str, Any],
        metrics: dict[str, Any],
        tags: dict[str, str],
        artifacts: Sequence[Artifact] = (),
        started: float | None = None,
        finished: float | None = None,
    ) -> str:
        """One finished run per trial, nested under the study run: ``params`` (knob values),
        ``metrics`` (medians, ``<metric>_ci_low/_ci_high`` ...; non-finite values dropped),
        ``tags`` (``state``, ``failure_reason`` ...), ``artifacts`` (see :data:`Artifact`).
        The run is FAILED when ``tags["state"] == "fail"``, else FINISHED. ``started``/``finished``
        (epoch seconds) are the trial's own start and end, so the UI shows its real duration (the run
        is logged after the trial); default: now."""
        from mlflow.entities import Metric, Param, RunTag

        assert self.experiment_id is not None and self.parent_run_id is not None, "start_study first"
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{number:03d}",
            start_time=int(started * 1000) if started is not None else None,
            tags={"mlflow.parentRunId": self.parent_run_id, "novatune.kind": "trial", "trial": str(number), **tags},
        )
        rid = run.info.run_id
        ts = int(run.info.start_time)
        self.client.log_batch(
            rid,
            metrics=[Metric(_key(k), v, ts, 0) for k, v in _finite(metrics).items()],
            params=[Param(_key(k), str(v)[:6000]) for k, v in params.items()],
            tags=[RunTag(_key(k), str(v)[:5000]) for k, v in tags.items()],
        )
        self._log_artifacts(rid, artifacts)
        status = "FAILED" if tags.get("state") == "fail" else "FINISHED"
        self.client.set_terminated(rid, status=status, end_time=int(finished * 1000) if finished is not None else None)
        return rid

    def log_study_step(self, metrics: dict[str, Any], *, step: int) -> None:
        """Step metrics on the study run while it runs (e.g. convergence progress per trial)."""
        from mlflow.entities import Metric

        if self.parent_run_id is None:
            return
        ts = int(time.time() * 1000)
        batch = [Metric(_key(k), v, ts, step) for k, v in _finite(metrics).items()]
        if batch:
            self.client.log_batch(self.parent_run_id, metrics=batch)

    def set_study_tags(self, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        if self.parent_run_id is not None and tags:
            self.client.log_batch(self.parent_run_id, tags=[RunTag(_key(k), str(v)[:5000]) for k, v in tags.items()])

    def finish_study(
        self,
        *,
        metrics: dict[str, Any],
        step_metrics: dict[str, list[float]],
        artifacts: Sequence[Artifact],
        tags: dict[str, str],
        status: str = "FINISHED",
    ) -> None:
        """Final metrics, step series, tags and artifacts (files, directories, or ``(path,
        artifact_dir)``) on the study run, then its status. An artifact that cannot be logged is
        reported and skipped; the status is set in any case."""
        from mlflow.entities import Metric, RunTag

        rid = self.parent_run_id
        if rid is None:
            return
        batch = [Metric(_key(k), v, 0, 0) for k, v in _finite(metrics).items()]
        for key, series in step_metrics.items():
            batch += [Metric(_key(key), float(v), 0, i) for i, v in enumerate(series) if math.isfinite(float(v))]
        try:
            for i in range(0, len(batch), 900):
                self.client.log_batch(rid, metrics=batch[i : i + 900])
            self.client.log_batch(rid, tags=[RunTag(_key(k), str(v)[:5000]) for k, v in tags.items()])
            self._log_artifacts(rid, artifacts)
        finally:
            self.client.set_terminated(rid, status=status)
