"""The one map from exceptions to HTTP answers.

Every user-facing error is a JSON body ``{"detail": message, "error": kind}``
(``problems`` lists each problem of an invalid spec). Bad input is a 4xx,
never a 500: a 500 means a bug, and is logged with its traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

__all__ = ["install", "status_map"]

log = logging.getLogger(__name__)


def status_map() -> list[tuple[type[BaseException], int]]:
    """(exception class, HTTP status), most specific first."""
    from actuators import ActuatorError, UnknownKnob
    from collectors.errors import CollectorError
    from experiments.config import ConfigError
    from experiments.export import ExportError, ExportRequestError
    from experiments.manager import StudyConflict, StudyStateError
    from experiments.settings import SettingsError
    from experiments.spec import SpecError
    from experiments.store import StudyNotFound

    pairs: list[tuple[type[BaseException], int]] = [
        (StudyNotFound, 404),
        (UnknownKnob, 404),
        (StudyConflict, 409),
        (StudyStateError, 409),
        (ExportError, 409),  # the study has nothing to export yet, or the trial is not exportable
        (ExportRequestError, 422),  # unknown format, bad include
        (SpecError, 422),
        (ConfigError, 422),
        (SettingsError, 422),
        (CollectorError, 422),
        (ActuatorError, 422),
    ]
    try:  # apply/rollback (experiments.apply)
        from experiments.apply import ApplicationNotFound, ApplyConflict, ApplyError

        pairs[:0] = [(ApplicationNotFound, 404), (ApplyConflict, 409)]
        pairs.append((ApplyError, 422))
    except ImportError:  # pragma: no cover - the module ships with the package
        pass
    return pairs


def _body(err: BaseException, status: int) -> dict[str, Any]:
    problems = getattr(err, "problems", None)
    detail = str(err)
    if problems:  # SpecError: "invalid study spec SRC:\n  - a\n  - b" -> a list
        detail = f"invalid study spec: {len(problems)} problem(s)"
    body: dict[str, Any] = {"detail": detail, "error": type(err).__name__}
    if problems:
        body["problems"] = list(problems)
    return body


def install(app: FastAPI) -> None:
    """Register the handlers on ``app``."""
    for cls, status in status_map():
        def handler(_request: Request, err: Exception, status: int = status) -> JSONResponse:
            return JSONResponse(_body(err, status), status_code=status)

        app.add_exception_handler(cls, handler)

    def internal(_request: Request, err: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=err)
        return JSONResponse({"detail": f"internal error: {type(err).__name__} (logged by the service)",
                             "error": "InternalError"}, status_code=500)

    app.add_exception_handler(Exception, internal)
