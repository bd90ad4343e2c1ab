"""Exceptions to HTTP answers: one handler for the :class:`~collectors.errors.NovatuneError` root.

Every error novatune raises on purpose carries its status (``http_status``: 404 unknown name, 409
conflict with the state of the system, 422 invalid input) and is answered with the JSON body
``{"detail": message, "error": class name}`` (``problems`` lists each problem of an invalid spec).
Anything else is a bug: a 500 whose traceback is logged. Bad input is a 4xx, never a 500
(``tests/integration/test_api_fuzz.py`` checks it).

:class:`RequestRefused` is the root of what the guard (:mod:`experiments.service.guard`) answers before
a route runs (a Host not allowed, a body too large, no token, too many failed tokens): its
:attr:`~RequestRefused.headers` (``WWW-Authenticate``, ``Retry-After``) go with the answer.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from collectors.errors import NovatuneError

__all__ = ["RequestRefused", "body", "install", "refusal"]

log = logging.getLogger(__name__)


class RequestRefused(NovatuneError):
    """A request refused before any route ran (HTTP 400 here; subclasses set their status); never raised
    by the CLI's own code (exit 2)."""

    exit_code = 2
    http_status = 400

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        #: response headers that go with the refusal
        self.headers: dict[str, str] = dict(headers or {})


def refusal(err: RequestRefused, *, close: bool = False) -> JSONResponse:
    """The answer to ``err``: its status, body and headers; ``close`` adds ``Connection: close`` (the
    request's body was not read, so the connection cannot carry another request)."""
    headers = {**err.headers, **({"connection": "close"} if close else {})}
    return JSONResponse(body(err), status_code=err.http_status, headers=headers)


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
    if isinstance(err, RequestRefused):
        return refusal(err)
    return JSONResponse(body(err), status_code=err.http_status)


def install(app: FastAPI) -> None:
    """Register the two handlers on ``app``: ``NovatuneError`` (its own status) and any other exception (500)."""
    app.add_exception_handler(NovatuneError, _novatune_error)
    app.add_exception_handler(Exception, _internal_error)
