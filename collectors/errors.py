"""Exceptions raised by :mod:`collectors`, and :class:`NovatuneError`, the root of every novatune error.

OS-level failures (``OSError``, ``psutil.Error``, ``subprocess`` failures) are
translated at the package boundary into these, with the original exception
chained (``raise WorkloadError(...) from err``).

The root lives here because ``collectors`` is the lowest package that raises
errors meant for a user (``actuators`` and ``experiments`` import it;
``optimizer`` raises plain ``ValueError`` and stays independent).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["CollectorError", "NovatuneError", "WorkloadError"]


class NovatuneError(Exception):
    """An error novatune raises on purpose, with a message a user can act on.

    Both faces answer every subclass from two class attributes, so there is one list of user errors
    (the class tree), not one per face:

    - the CLI (``experiments.cli.main``) prints ``error: <message>`` on one line, no traceback, and
      exits with :attr:`exit_code`;
    - the HTTP API (``experiments.service.errors``) answers :attr:`http_status` with the JSON body
      ``{"detail": <message>, "error": <class name>}`` (plus ``problems`` for an invalid spec).

    Subclasses set both: 404 for an unknown name, 409 for a conflict with the state of the system (a
    knob held, a study not running, nothing to export), 422 for invalid input. An exception that is
    not a ``NovatuneError`` is a bug: exit 1 / HTTP 500, logged.
    """

    #: the CLI's exit code
    exit_code: ClassVar[int] = 2
    #: the HTTP API's status code
    http_status: ClassVar[int] = 422
    #: every problem found, one per item, when the error lists several (an invalid spec); None otherwise
    problems: list[str] | None = None


class CollectorError(NovatuneError):
    """Base class of every error raised by :mod:`collectors` (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class WorkloadError(CollectorError):
    """A workload could not be started, driven or measured (exit 2, HTTP 422).

    The message says what failed and, where there is one, carries the tail of
    the failing process's stderr.
    """

    exit_code = 2
    http_status = 422
