"""Background studies: launch, watch, stop, delete and resume them.

Each background study runs in a worker process of its own
(``python -P -m experiments.study.worker NAME``, a new session), so a study's CPU work
never slows the API and a stop is a plain SIGTERM: the runner restores the
trial's knobs in its ``finally`` blocks, then the worker records ``stopped``.
The worker starts in ``/`` with ``-P`` and novatune's own package directory first
on ``PYTHONPATH``: nothing in the data directory (or any working directory) is
importable by it.

A study's name is one path component (:func:`experiments.settings.check_name`),
checked when the study is claimed and before anything is deleted.

The registry is a small SQLite file (``service.db`` in the data directory)
shared by the service and the CLI. Its rows say who runs which study, with
which host-wide knobs; the check that two studies never tune the same knob and
the insert of the new row happen in one ``BEGIN IMMEDIATE`` transaction, so
two launches racing each other cannot both win.

States: ``starting`` -> ``running`` -> ``completed`` | ``stopped`` |
``failed``; ``interrupted`` (the service stopped, or the worker died) is
resumed by :meth:`StudyManager.reconcile` at the next service start: ``recover``
restores what the dead run left changed, the trial that was running is marked
failed, and the study carries on with the rest of its budget.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from actuators import Catalog, Journal, Knob, UnknownKnob, recover
from actuators.journal import process_ctime, same_process
from collectors.errors import NovatuneError
from collectors.workloads.process import child_env
from experiments.holds import KnobHeld, KnobHolds
from experiments.settings import Paths, check_name
from experiments.spec import StudySpec
from experiments.storage import ENV as STORAGE_ENV
from experiments.study.results import StudyNotFound

__all__ = ["ACTIVE", "StudyConflict", "StudyManager", "StudyRecord", "StudyStateError", "shared_knobs"]

log = logging.getLogger(__name__)

#: states in which a study holds its knobs
ACTIVE = ("starting", "running", "stopping")
FINAL = ("completed", "stopped", "failed")
#: a claimed study whose worker has no pid yet is being launched, not dead, for this long
LAUNCH_GRACE_S = 60.0
#: scopes a study owns by itself: its own workload's cgroup and processes, or a price model (no write)
PRIVATE_SCOPES = ("cgroup", "process", "vm")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    managed INTEGER NOT NULL,       -- 1: a worker the service/CLI launched; 0: a foreground `study run`
    pid INTEGER, pid_ctime REAL,
    knobs TEXT NOT NULL,            -- JSON list: every knob of the spec
    shared TEXT NOT NULL,           -- JSON list: the host-wide ones (what two studies may not share)
    spec TEXT NOT NULL, trials INTEGER NOT NULL,
    created REAL NOT NULL, updated REAL NOT NULL,
    reason TEXT, stop_requested INTEGER NOT NULL DEFAULT 0, resumes INTEGER NOT NULL DEFAULT 0
)
"""


class StudyConflict(NovatuneError):
    """A study cannot start: another running study tunes some of the same knobs (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


class StudyStateError(NovatuneError):
    """The study is not in a state that allows this (stop a completed study, ...): exit 2, HTTP 409."""

    exit_code = 2
    http_status = 409


@dataclass
class StudyRecord:
    name: str
    state: str
    managed: bool
    pid: int | None
    knobs: list[str]
    shared: list[str]
    trials: int
    created: float
    updated: float
    reason: str | None = None
    stop_requested: bool = False
    resumes: int = 0
    spec: dict[str, Any] = field(default_factory=dict, repr=False)
    pid_ctime: float | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("spec")
        d.pop("pid_ctime")
        return d

    def alive(self) -> bool:
        """Whether the process running this study is still that process (pid reuse is ruled out)."""
        if self.pid_ctime is None:  # recorded before its create time could be read: the pid alone
            return self.pid is not None and process_ctime(self.pid) is not None
        return same_process(self.pid, self.pid_ctime)


def host_wide(knobs: Iterable[Knob]) -> list[str]:
    """The names of the host-wide knobs among ``knobs`` (sysctls, /sys files, IRQs, NIC features): two
    studies may tune their own workloads' cgroup and process knobs side by side, never the same host knob."""
    # block.@target.* (before a run binds them): the study's own loop device, or its disk (held once bound)
    return sorted(k.name for k in knobs if k.scope not in PRIVATE_SCOPES and "@target." not in k.name)


def shared_knobs(knobs: list[str], catalog: Catalog | None = None) -> list[str]:
    """:func:`host_wide` by name (a spec's knobs, before a run binds them)."""
    catalog = catalog or Catalog()
    out = []
    for name in knobs:
        try:
            scope = catalog.get(name).scope
        except UnknownKnob:
            scope = "host"  # validated elsewhere; if it ever gets here, be conservative
        if scope not in PRIVATE_SCOPES:
            out.append(name)
    return sorted(out)


class StudyManager:
    """The registry of studies and their worker processes, over one data directory.

    Args:
        paths: the data directory.
        max_running: how many studies may run at once (each measures on this machine).
        stop_timeout_s: how long a stop waits for the worker to restore and exit before it is
            killed (then ``recover`` restores its knobs).
        max_resumes: how often a study whose worker died is resumed before it is marked failed.
    """

    def __init__(self, paths: Paths, *, max_running: int = 2, stop_timeout_s: float = 60.0, max_resumes: int = 3,
                 tracking_uri: str | None = None) -> None:
        self.paths = paths.ensure()
        self.max_running = max_running
        self.stop_timeout_s = stop_timeout_s
        self.max_resumes = max_resumes
        self.tracking_uri = tracking_uri
        self.db = self.paths.home / "service.db"
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        with self._conn() as c:
            c.execute(_SCHEMA)

    # --------------------------------------------------------------- registry
    @contextmanager
    def _conn(self, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        c = sqlite3.connect(self.db, timeout=30, isolation_level=None)
        c.row_factory = sqlite3.Row
        try:
            if write:
                c.execute("BEGIN IMMEDIATE")
            yield c
            if write:
                c.execute("COMMIT")
        except BaseException:
            if write and c.in_transaction:
                c.execute("ROLLBACK")
            raise
        finally:
            c.close()

    @staticmethod
    def _record(row: sqlite3.Row) -> StudyRecord:
        return StudyRecord(
            name=row["name"], state=row["state"], managed=bool(row["managed"]), pid=row["pid"],
            knobs=json.loads(row["knobs"]), shared=json.loads(row["shared"]), trials=row["trials"],
            created=row["created"], updated=row["updated"], reason=row["reason"],
            stop_requested=bool(row["stop_requested"]), resumes=row["resumes"], spec=json.loads(row["spec"]),
            pid_ctime=row["pid_ctime"],
        )

    def records(self) -> list[StudyRecord]:
        with self._conn() as c:
            return [self._record(r) for r in c.execute("SELECT * FROM studies ORDER BY created")]

    def record(self, name: str) -> StudyRecord | None:
        with self._conn() as c:
            row = c.execute("SELECT * FROM studies WHERE name = ?", (name,)).fetchone()
        return self._record(row) if row else None

    def update(self, name: str, **fields: Any) -> None:
        fields["updated"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._conn() as c:
            c.execute(f"UPDATE studies SET {cols} WHERE name = ?", (*fields.values(), name))

    def _existing_names(self, c: sqlite3.Connection) -> set[str]:
        names = {r["name"] for r in c.execute("SELECT name FROM studies")}
        if self.paths.runs.is_dir():
            names |= {p.name for p in self.paths.runs.iterdir()}
        if self.paths.has_studies:
            from experiments.study.results import list_studies

            names |= {s["name"] for s in list_studies(self.paths.optuna_url)}
        return names

    def claim(self, spec: StudySpec, *, name: str | None, trials: int | None, managed: bool,
              pid: int | None = None, source: str = "<request>", shared: list[str] | None = None) -> StudyRecord:
        """Register a study about to run: checks the knob overlap and the running limit and picks a
        free name, atomically. ``shared``: its host-wide knobs when the caller resolved them already
        (:func:`host_wide`), else looked up by name. Raises :class:`StudyConflict` or :class:`SpecError`."""
        knobs = sorted(spec.knobs)
        shared = sorted(shared) if shared is not None else shared_knobs(knobs)
        now = time.time()
        with self._conn(write=True) as c:
            active = [self._record(r) for r in c.execute(
                f"SELECT * FROM studies WHERE state IN ({','.join('?' * len(ACTIVE))})", ACTIVE)]
            active = [r for r in active if r.managed or r.alive()]  # a foreground run that died holds nothing
            for other in active:
                overlap = sorted(set(shared) & set(other.shared))
                if overlap:
                    raise StudyConflict(
                        f"study {other.name!r} ({other.state}) is tuning {', '.join(overlap)}; two studies never "
                        f"tune the same knob at the same time: stop it first, or leave these knobs out"
                    )
            if len(active) >= self.max_running:
                raise StudyConflict(
                    f"{len(active)} studies are running ({', '.join(r.name for r in active)}); the limit "
                    f"max_running_studies is {self.max_running}: wait, stop one, or raise the limit"
                )
            existing = self._existing_names(c)
            if name is not None:
                if check_name(name) in existing:
                    raise StudyConflict(f"a study named {name!r} exists already; choose another name, or leave "
                                        "the name out to get the next free one")
            else:
                name, n = check_name(spec.name, what="the spec's name"), 1
                while name in existing:
                    n += 1
                    name = f"{spec.name[:63 - len(str(n))]}-{n}"  # a free name is a valid name (64 at most)
            n_trials = trials if trials is not None else spec.budget.trials
            c.execute(
                "INSERT INTO studies (name, state, managed, pid, pid_ctime, knobs, shared, spec, trials, created, "
                "updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, "starting" if managed else "running", int(managed), pid,
                 process_ctime(pid) if pid else None, json.dumps(knobs), json.dumps(shared),
                 json.dumps(spec.model_dump(mode="json")), n_trials, now, now),
            )
        return self.get(name)  # just inserted, in this transaction's commit

    # ---------------------------------------------------------------- workers
    def submit(self, spec: StudySpec, *, name: str | None = None, trials: int | None = None,
               source: str = "<request>") -> StudyRecord:
        """Validate ``spec`` as a run would, register it, start its worker; returns the record."""
        from experiments.study.prepare import prepare

        plan = prepare(spec, paths=self.paths, trials=trials, source=source)  # raises SpecError
        rec = self.claim(spec, name=name, trials=trials, managed=True, source=source,
                         shared=host_wide(plan.resolved.knobs.values()))
        try:  # a study of another data directory may tune these knobs: its machine-wide holds say so
            KnobHolds(rec.shared, owner="a check").acquire().release()
        except KnobHeld as err:
            with self._conn() as c:
                c.execute("DELETE FROM studies WHERE name = ?", (rec.name,))
            raise StudyConflict(str(err)) from None
        try:
            self._spawn(rec.name)
        except OSError as err:
            self.update(rec.name, state="failed", reason=f"the worker could not start: {err}")
            raise
        return self.get(rec.name)

    def _spawn(self, name: str) -> None:
        log_dir = self.paths.study_dir(name)
        log_dir.mkdir(parents=True, exist_ok=True)
        # novatune's own packages first on the path; -P: no working directory (nor the script's) on it
        env = {**child_env(secrets=True), "NOVATUNE_HOME": str(self.paths.home)}
        if self.tracking_uri:
            env["NOVATUNE_MLFLOW_TRACKING_URI"] = self.tracking_uri
        env.pop(STORAGE_ENV, None)  # the worker uses this manager's study store, whatever the environment says
        if self.paths.storage:
            env[STORAGE_ENV] = self.paths.storage
        with open(log_dir / "worker.log", "ab") as logf:
            proc = subprocess.Popen(
                [sys.executable, "-P", "-m", "experiments.study.worker", name],
                env=env, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the service's terminal is not the study's stop
                cwd="/",  # never the data directory: nothing there is importable
            )
        self._children[name] = proc
        self.update(name, pid=proc.pid, pid_ctime=process_ctime(proc.pid))

    def stop(self, name: str, *, wait: bool = True) -> StudyRecord:
        """Stop a running study: its worker restores the knobs, then the state becomes ``stopped``."""
        rec = self.get(name)
        if rec.state not in ACTIVE + ("interrupted",):
            raise StudyStateError(f"study {name!r} is {rec.state}; only a running study can be stopped")
        self.update(name, stop_requested=1, state="stopping" if rec.alive() else rec.state)
        if rec.alive():
            self._signal(rec, signal.SIGTERM)
            if not wait:
                return self.get(name)
            deadline = time.monotonic() + self.stop_timeout_s
            while rec.alive() and time.monotonic() < deadline:
                self._reap(name)
                time.sleep(0.1)
            if rec.alive():
                log.warning("study %s: the worker did not stop in %.0f s; killing it", name, self.stop_timeout_s)
                self._signal(rec, signal.SIGKILL)
                for _ in range(50):
                    if not rec.alive():
                        break
                    time.sleep(0.1)
        self._reap(name)
        rec = self.get(name)
        if rec.state not in FINAL:  # the worker could not record it (killed, or never ran): recover, then record
            report = recover(Journal(self.paths.journal), force=False)
            self.update(name, state="stopped", pid=None,
                        reason=f"stopped; recover restored {len(report.restored)} knob(s)")
        return self.get(name)

    def _signal(self, rec: StudyRecord, sig: int) -> None:
        try:
            if rec.pid is not None:
                os.kill(rec.pid, sig)
        except ProcessLookupError:
            pass

    def _reap(self, name: str) -> None:
        proc = self._children.get(name)
        if proc is not None and proc.poll() is not None:
            del self._children[name]

    def delete(self, name: str) -> dict[str, Any]:
        """Forget a study: stop it if it runs, then drop its trials, registry row and files.
        The MLflow experiment stays (the record of what was tried)."""
        import shutil

        import optuna

        victim = self.paths.study_dir(name)  # a valid name under runs/, checked before anything goes
        rec = self.record(name)
        if rec is not None and (rec.state in ACTIVE or rec.state == "interrupted"):
            if not rec.managed and rec.alive():
                raise StudyStateError(f"study {name!r} runs in the foreground (pid {rec.pid}); stop it there first")
            self.stop(name)
        found = rec is not None
        if self.paths.has_studies:
            try:
                optuna.delete_study(study_name=name, storage=self.paths.optuna_url)
                found = True
            except KeyError:
                pass
        if not found:
            raise StudyNotFound(f"no study named {name!r}")
        with self._conn() as c:
            c.execute("DELETE FROM studies WHERE name = ?", (name,))
        shutil.rmtree(victim, ignore_errors=True)
        return {"name": name, "deleted": True, "mlflow_experiment": f"novatune/{name} (kept)"}

    def get(self, name: str) -> StudyRecord:
        rec = self.record(name)
        if rec is None:
            raise StudyNotFound(f"no study named {name!r}")
        return rec

    # ------------------------------------------------------------- lifecycle
    def worker_finished(self, name: str, state: str, reason: str | None) -> None:
        """Called by the worker as it exits (after the runner restored the knobs)."""
        rec = self.record(name)
        if rec is None:
            return
        if state == "interrupted" and rec.stop_requested:
            state = "stopped"
        self.update(name, state=state, reason=reason, pid=None, pid_ctime=None)

    def reconcile(self) -> list[str]:
        """At service start (and periodically): adopt live workers, resume studies whose worker died,
        finish stops that were requested. Returns what it did, one line each."""
        done = []
        for name in list(self._children):  # workers that ended are waited for: no zombie until the service exits
            self._reap(name)
        for rec in self.records():
            if rec.state not in ACTIVE + ("interrupted",):
                continue
            if rec.alive():
                continue  # adopted: it records its own end
            launching = rec.managed and rec.pid is None and rec.state == "starting"
            if launching and time.time() - rec.updated < LAUNCH_GRACE_S:
                continue  # claimed, its worker is being started right now (by submit, in another thread)
            self._reap(rec.name)
            recover(Journal(self.paths.journal))  # first, whatever comes next: what the dead run left is restored
            if not rec.managed:
                self.update(rec.name, state="failed", pid=None, reason="the foreground run ended without a result")
                done.append(f"{rec.name}: its foreground run died; marked failed")
            elif rec.stop_requested:
                self.update(rec.name, state="stopped", pid=None)
                done.append(f"{rec.name}: stopped")
            elif rec.resumes >= self.max_resumes:
                self.update(rec.name, state="failed", pid=None,
                            reason=f"the worker died {rec.resumes + 1} times; not resumed again")
                done.append(f"{rec.name}: failed (too many resumes)")
            else:
                crashed = rec.state in ACTIVE  # vs. "interrupted": the worker stopped cleanly (service shutdown)
                self.update(rec.name, state="starting", resumes=rec.resumes + crashed,
                            reason=f"resumed after {'its worker died' if crashed else rec.reason or 'an interruption'}")
                self._spawn(rec.name)
                done.append(f"{rec.name}: resumed")
        return done

    def shutdown(self, *, timeout_s: float | None = None) -> None:
        """The service stops: its workers restore their knobs and exit; the studies resume at next start."""
        timeout_s = self.stop_timeout_s if timeout_s is None else timeout_s
        live = [r for r in self.records() if r.managed and r.state in ACTIVE and r.alive()]
        for rec in live:
            self._signal(rec, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for rec in live:
            while rec.alive() and time.monotonic() < deadline:
                self._reap(rec.name)
                time.sleep(0.1)
            self._reap(rec.name)
