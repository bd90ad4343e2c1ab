"""What ``GET /studies`` and ``GET /studies/{id}`` answer, kept ready between changes.

A study's summary comes from three places: the registry (who runs it, its
state), the ``status.json`` its runner rewrites after every trial (progress,
best so far, convergence) and, for studies run before status files existed,
the Optuna store. Requests only ``stat`` those files; the summaries are rebuilt
when one changed, and the serialized JSON is reused as is, so listing studies
stays cheap while a study runs.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from experiments.safefs import UnsafeLocation
from experiments.settings import Paths
from experiments.study.manager import ACTIVE, StudyManager

__all__ = ["Best", "StudyIndex", "StudySummary"]

#: reads look at the files at most this often (each look is a few stat calls)
CHECK_INTERVAL_S = 0.1


class Best(BaseModel):
    value: float
    trial: int


class Leader(BaseModel):
    """The trial leading so far: the knee of the feasible front (one objective: the best trial)."""

    trial: int
    values: dict[str, float] = Field(description="that trial's value of every objective")
    front_size: int = Field(description="feasible trials on the Pareto front so far")


class StudySummary(BaseModel):
    """A study's state and progress."""

    name: str = Field(description="the study's id")
    state: str = Field(description="starting, running, stopping, stopped, completed, failed or interrupted")
    managed: bool = Field(description="launched in the background (API or `study start`), not a foreground run")
    pid: int | None = None
    trials_total: int | None = None
    trials_done: int = 0
    trials_failed: int = 0
    trials_feasible: int = 0
    running_trial: int | None = None
    objectives: dict[str, str] = Field(default_factory=dict, description="objective -> maximize|minimize")
    best: dict[str, Best] = Field(default_factory=dict, description="best feasible value so far, per objective "
                                  "(each objective's best may come from a different trial: see leader)")
    leader: Leader | None = Field(default=None, description="the trial leading so far (the knee of the feasible "
                                  "front), with all its objective values")
    choice: dict[str, Any] | None = Field(default=None, description="the configuration chosen for export")
    profile_changes: dict[str, Any] | None = Field(default=None, description="with a profile: section, the "
                                                   "functions whose share of the samples changed most between "
                                                   "the baseline and the chosen trial")
    convergence: dict[str, Any] | None = None
    stop_reason: str | None = None
    reason: str | None = Field(default=None, description="why the state is what it is (failures, resumes)")
    knobs: list[str] = Field(default_factory=list)
    workload: str | None = None
    sampler: str | None = None
    resumes: int = 0
    created: float | None = None
    updated: float | None = None


class StudyIndex:
    """Summaries of every study in the data directory, rebuilt when the files behind them change."""

    def __init__(self, paths: Paths, manager: StudyManager) -> None:
        self.paths = paths
        self.manager = manager
        self._lock = threading.Lock()
        self._key: Any = None
        self._status: dict[str, tuple[Any, dict[str, Any]]] = {}
        self._legacy: dict[str, dict[str, Any]] = {}
        self._legacy_names: tuple[str, ...] | None = None
        self._names_stamp: Any = -1
        self._names: tuple[str, ...] = ()
        self._registered: frozenset[str] = frozenset()
        self._checked = -1.0
        self._dirty = True
        self._summaries: dict[str, bytes] = {}
        self._listing = b"[]"

    @staticmethod
    def _mtime(path: Path) -> tuple[int, int, int] | None:
        """What changes when the file does: a status file is replaced (new inode), the registry is
        written in place (mtime, size); mtimes alone are too coarse (one clock tick, ~4 ms)."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _status_files(self) -> dict[str, tuple[int, int, int]]:
        out = {}
        try:
            with os.scandir(self.paths.runs) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):  # a link under runs/ is no study of ours
                        m = self._mtime(Path(entry.path) / "status.json")
                        if m:
                            out[entry.name] = m
        except OSError:
            pass
        return out

    def _optuna_names(self) -> tuple[str, ...]:
        """The study names in the Optuna store, read with one SELECT when the file changed (listing
        the studies through Optuna takes 40-130 ms: done only when a study without a status file appears).
        A shared storage has no file to watch: its names are read each time (the summaries only when they change)."""
        if self.paths.storage is not None:
            import optuna

            return tuple(sorted(optuna.get_all_study_names(self.paths.storage)))
        stamp = self._mtime(self.paths.optuna_db)
        if stamp != self._names_stamp:
            names: tuple[str, ...] = ()
            if stamp is not None:
                try:
                    con = sqlite3.connect(f"{self.paths.optuna_db.as_uri()}?mode=ro", uri=True, timeout=5)
                    try:
                        names = tuple(sorted(r[0] for r in con.execute("SELECT study_name FROM studies")))
                    finally:
                        con.close()
                except sqlite3.Error:  # no schema yet, or a schema Optuna changed: list through Optuna
                    names = tuple(sorted(self._list_legacy()))
            self._names_stamp, self._names = stamp, names
        return self._names

    def _current_key(self) -> tuple[Any, ...]:
        statuses = self._status_files()
        registry_stamp = self._mtime(self.manager.db)
        # studies with neither a status file nor a registry row (run before status files existed)
        legacy = tuple(n for n in self._optuna_names() if n not in statuses and n not in self._registered)
        # the time bucket: a registry update inside the same clock tick as the last one is seen within 0.5 s
        return (registry_stamp, int(time.monotonic() * 2), tuple(sorted(statuses.items())), legacy)

    def _rebuild(self, key: tuple[Any, ...]) -> None:
        statuses = dict(key[2])
        complete = True
        for name, m in statuses.items():
            if self._status.get(name, (None,))[0] != m:
                try:
                    data = json.loads((self.paths.study_dir(name) / "status.json").read_text())
                except UnsafeLocation:
                    continue  # a link under runs/ is not a study's directory: never read through it
                except (OSError, ValueError):
                    complete = False  # being replaced right now: the next look reads it
                    continue
                self._status[name] = (m, data)
        for name in list(self._status):
            if name not in statuses:
                del self._status[name]
        if key[3] != self._legacy_names:
            self._legacy = {n: s for n, s in self._list_legacy().items() if n in key[3]} if key[3] else {}
            self._legacy_names = key[3]
        records = {r.name: r for r in self.manager.records()}
        self._registered = frozenset(records)
        names = list(dict.fromkeys([*self._legacy, *records, *self._status]))
        summaries = {}
        for name in names:
            summaries[name] = self._summary(name, records.get(name), self._status.get(name, (0, None))[1],
                                            self._legacy.get(name))
        order = sorted(summaries.values(), key=lambda s: s.created or 0)
        self._summaries = {s.name: s.model_dump_json().encode() for s in order}
        self._listing = b"[" + b",".join(self._summaries[s.name] for s in order) + b"]"
        self._key = key if complete else None

    def _list_legacy(self) -> dict[str, dict[str, Any]]:
        if not self.paths.has_studies:
            return {}
        from experiments.study.results import list_studies

        return {s["name"]: s for s in list_studies(self.paths.optuna_url)}

    @staticmethod
    def _summary(name: str, rec: Any, status: dict[str, Any] | None, legacy: dict[str, Any] | None) -> StudySummary:
        st = status or {}
        created = rec.created if rec else None
        if created is None and legacy and legacy.get("started"):
            from datetime import datetime

            created = datetime.fromisoformat(legacy["started"]).timestamp()
        state = rec.state if rec else st.get("state") or (legacy or {}).get("state", "unknown")
        reason = rec.reason if rec else None
        if rec and rec.managed and state in ACTIVE and rec.pid is not None and not rec.alive():
            # shown as it is until a service reconciles it (the registry is not changed by a read)
            state = "interrupted"
            reason = (f"its worker (pid {rec.pid}) is gone; `novatune serve` resumes the study, "
                      "`novatune study stop` ends it")
        objectives = st.get("objectives") or (
            dict(zip(legacy.get("objectives", []), legacy.get("directions", []))) if legacy else {})
        return StudySummary(
            name=name,
            state=state,
            managed=bool(rec and rec.managed),
            pid=(rec.pid if rec else None) if state in ("starting", "running", "stopping") else None,
            trials_total=rec.trials if rec else st.get("trials_total"),
            trials_done=st.get("trials_done", (legacy or {}).get("trials", 0)),
            trials_failed=st.get("trials_failed", 0),
            trials_feasible=st.get("trials_feasible", 0),
            running_trial=st.get("running_trial") if state in ("running", "stopping") else None,
            objectives=objectives,
            best=st.get("best") or {},
            leader=st.get("leader"),
            choice=st.get("choice"),
            profile_changes=st.get("profile_changes"),
            convergence=st.get("convergence"),
            stop_reason=st.get("stop_reason"),
            reason=reason,
            knobs=(rec.knobs if rec else None) or st.get("knobs") or [],
            workload=st.get("workload") or ((rec.spec.get("workload") or {}).get("kind") if rec else None),
            sampler=st.get("sampler"),
            resumes=rec.resumes if rec else st.get("resumed", 0),
            created=created,
            updated=max(filter(None, [rec.updated if rec else None, st.get("updated")]), default=None),
        )

    def _fresh(self) -> None:
        now = time.monotonic()
        if not self._dirty and now - self._checked < CHECK_INTERVAL_S:
            return
        with self._lock:
            self._dirty = False
            self._checked = now
            key = self._current_key()
            if key != self._key:
                self._rebuild(key)

    def invalidate(self) -> None:
        """Look at the files at the next read (after a write through this process: launch, stop, delete)."""
        self._dirty = True

    def listing(self) -> bytes:
        """``GET /studies``: a JSON array of :class:`StudySummary`, oldest first."""
        self._fresh()
        return self._listing

    def summary(self, name: str) -> bytes | None:
        """``GET /studies/{name}``: one :class:`StudySummary` as JSON, or None."""
        self._fresh()
        return self._summaries.get(name)

    def convergence(self, name: str | None = None) -> list[dict[str, Any]]:
        """Each study's convergence state and stop reason (``GET /tuning/convergence``); StudyNotFound
        when ``name`` is not a study."""
        rows = [{k: s.get(k) for k in ("name", "state", "trials_done", "trials_total", "convergence", "stop_reason")}
                for s in json.loads(self.listing()) if name is None or s["name"] == name]
        if name is not None and not rows:
            from experiments.study.results import StudyNotFound

            raise StudyNotFound(f"no study named {name!r}")
        return rows
