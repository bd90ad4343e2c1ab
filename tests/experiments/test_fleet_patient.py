"""The agent's patient Optuna storage (:class:`experiments.fleet.patient.PatientStorage`) on SQLite: a call that
finds the database unreachable waits and tries again, also the calls Optuna's study makes through its trial cache
(``study.ask`` -> ``_CachedStorage`` -> ``_create_new_trial`` / ``_set_trial_param``), which a PostgreSQL restart
in the middle of an ask used to turn into an error and an orphan trial. The restart itself:
tests/integration/test_fleet_agents.py."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa

from experiments.fleet.patient import PatientStorage


def _down(storage: PatientStorage, statement: str, times: int) -> list[str]:
    """The next ``times`` statements starting with ``statement`` fail as a lost connection does; returns them."""
    failed: list[str] = []

    @sa.event.listens_for(storage.engine, "before_cursor_execute")
    def _cut(conn, cursor, sql, params, context, executemany):
        if sql.lstrip().upper().startswith(statement) and len(failed) < times:
            failed.append(sql)
            raise sa.exc.OperationalError(sql, params, ConnectionError("server closed the connection"))

    return failed


# Optuna tries a trial's creation 5 times itself (for deadlocks), 0-2 s apart: a database away for longer
# (6 failures) is what the patience is for; a parameter's write it does not retry at all
@pytest.mark.parametrize(("statement", "times"), [("INSERT INTO TRIALS", 6), ("INSERT INTO TRIAL_PARAMS", 1)])
def test_an_ask_through_the_trial_cache_waits_for_the_database(tmp_path: Path, statement: str, times: int,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "sleep", lambda s: None)  # the pauses between tries: not what is tested
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = PatientStorage(f"sqlite:///{tmp_path / 'optuna.db'}", patience_s=30)
    optuna.create_study(study_name="s", storage=storage)
    study = optuna.load_study(study_name="s", storage=storage)  # wrapped in Optuna's _CachedStorage
    failed = _down(storage, statement, times)
    trial = study.ask()
    trial.suggest_int("x", 0, 10)
    study.tell(trial, 1.0)
    assert len(failed) == times, "the cuts did not all happen: the test did not reach the call it is about"
    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert [(t.number, t.state.name) for t in trials] == [(0, "COMPLETE")]  # no orphan trial, nothing lost
    assert "x" in trials[0].params
