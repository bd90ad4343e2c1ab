"""An Optuna RDB storage that waits out a database restart instead of failing the agent's trial.

A PostgreSQL restart (an upgrade, a fail-over) cuts every connection for seconds. Optuna's ``RDBStorage``
raises on the first statement that meets it: in an agent that would be the ``tell`` of a trial it has
just measured, and the measurement would be lost. :class:`PatientStorage` retries each storage call that
failed to reach the database (SQLAlchemy's ``OperationalError``/``InterfaceError``, also when Optuna wraps
it in ``StorageInternalError``: no connection, not a wrong statement) with a growing pause, for up to
``patience_s`` seconds, then raises as before. The connection pool checks a connection before using it
(``pool_pre_ping``), so the first call after the restart gets a new one.

A retried call is safe when its first attempt did not reach the database. When it did, and only the
answer was lost: a repeated state change raises ``UpdateFinishedTrialError`` (the agent treats the trial
as told), a repeated attribute write writes the same value, a repeated ``create_new_trial`` leaves one
extra trial RUNNING that no host runs, which the agents fail after twice the grace period.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import optuna
import sqlalchemy.exc

__all__ = ["UNREACHABLE", "PatientStorage", "unreachable"]

log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])

#: the errors that mean "the database is not reachable now" (psycopg's OperationalError arrives wrapped in
#: SQLAlchemy's; Optuna wraps that again in StorageInternalError when a session fails: see :func:`unreachable`)
UNREACHABLE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)


def unreachable(err: BaseException) -> bool:
    """Whether ``err`` says the database could not be reached (not that a statement was wrong)."""
    if isinstance(err, optuna.exceptions.StorageInternalError):
        err = err.__cause__ or err
    return isinstance(err, UNREACHABLE)

#: every storage method that opens a session, as an agent reaches it: directly, or through Optuna's study and
#: heartbeat code and its ``_CachedStorage``, which calls ``_create_new_trial``, ``_set_trial_param`` and
#: ``_get_best_trial_id`` itself (``create_new_trial``, ``set_trial_param`` and ``get_best_trial`` only call
#: those, so they are patient through them, not wrapped twice)
_CALLS = ("create_new_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
          "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
          "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "_create_new_trial", "_set_trial_param",
          "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
          "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
          "_get_best_trial_id", "record_heartbeat", "_get_stale_trial_ids", "_get_trials")


def _patient(method: F) -> F:
    @functools.wraps(method)
    def call(self: PatientStorage, *args: Any, **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.patience_s
        pause = 0.2
        while True:
            try:
                return method(self, *args, **kwargs)
            except (*UNREACHABLE, optuna.exceptions.StorageInternalError) as err:
                if not unreachable(err) or time.monotonic() + pause > deadline:
                    raise
                cause = err.__cause__ or err
                log.warning("the storage is unreachable (%s: %s); retrying in %.1f s", method.__name__,
                            type(getattr(cause, "orig", cause)).__name__, pause)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    return call  # type: ignore[return-value]


class PatientStorage(optuna.storages.RDBStorage):
    """``RDBStorage`` whose calls wait up to ``patience_s`` seconds for an unreachable database.

    Args:
        url: the SQLAlchemy URL.
        patience_s: how long one call keeps retrying (default 120 s).
        **kwargs: passed to ``RDBStorage`` (``heartbeat_interval``, ``grace_period``, ...).
    """

    def __init__(self, url: str, *, patience_s: float = 120.0, **kwargs: Any) -> None:
        self.patience_s = patience_s
        engine_kwargs = {"pool_pre_ping": True, **kwargs.pop("engine_kwargs", {})}
        deadline = time.monotonic() + patience_s
        races = 0
        while True:  # the first connection too: an agent started while the database restarts waits
            try:
                super().__init__(url, engine_kwargs=engine_kwargs, **kwargs)
                return
            except UNREACHABLE:
                if time.monotonic() + 1 > deadline:
                    raise
                time.sleep(1)
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                # agents started together on an empty database all create Optuna's schema: one wins, the
                # others' CREATE TYPE/TABLE collide; once it is made, opening again finds it
                races += 1
                if races > 5:
                    raise
                time.sleep(0.5 * races)


for _name in _CALLS:
    setattr(PatientStorage, _name, _patient(getattr(optuna.storages.RDBStorage, _name)))
