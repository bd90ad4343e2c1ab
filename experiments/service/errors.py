"""Exceptions to HTTP answers: one handler for the :class:`~collectors.errors.NovatuneError` root.

Every error novatune raises on purpose carries its status (``http_status``: 404 unknown name, 409
conflict with the state of the system, 422 invalid input) and is answered with the JSON body
``{"detail": message, "error": class name}`` (``problems`` lists each problem of an invalid spec).
Anything else is a bug: a 500 whose traceback is logged. Bad input is a 4xx, never a 500
(``tests/integration/test_api_fuzz.py`` checks it).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from collectors.errors import NovatuneError

__all__ = ["body", "install"]

log = logging.getLogger(__name__)


def body(err: NovatuneError) -> dict[str, Any]:
    """The JSON body answering ``err``: ``detail`` and ``error``; an invalid spec (an error with
    ``problems``) has a short ``detail`` and the list of ``problems``."""
    problems = err.problems
    detail = str(err)
    if problems:  # SpecError: "invalid study spec SRC:\n  - a\n  - b" -> a list
        detail = f"invalid study spec: {len(problems)} problem(s)"
    answer: dict[str, Any] = {"detail": detail, "error": type(err).__name__}
    if problems:
        answer["problems"] = list(problems)
    return answer


def _internal_error(_request: Request, err: Exception) -> JSONResponse:
    log.exception("internal error", exc_info=err)
    return JSONResponse({"detail": f"internal error: {type(err).__name__} (logged by the service)",
                         "error": "InternalError"}, status_code=500)


def _novatune_error(request: Request, err: Exception) -> JSONResponse:
    if not isinstance(err, NovatuneError):  # registered for NovatuneError only: never taken
        return _internal_error(request, err)
    return JSONResponse(body(err), status_code=err.http_status)


def install(app: FastAPI) -> None:
    """Register the two handlers on ``app``: ``NovatuneError`` (its own status) and any other exception (500)."""
    app.add_exception_handler(NovatuneError, _novatune_error)
    app.add_exception_handler(Exception, _internal_error)
