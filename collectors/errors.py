"""Exceptions raised by :mod:`collectors`.

OS-level failures (``OSError``, ``psutil.Error``, ``subprocess`` failures) are
translated at the package boundary into these, with the original exception
chained (``raise WorkloadError(...) from err``).
"""

from __future__ import annotations

__all__ = ["CollectorError", "WorkloadError"]


class CollectorError(Exception):
    """Base class of every error raised by :mod:`collectors`."""


class WorkloadError(CollectorError):
    """A workload could not be started, driven or measured.

    The message says what failed and, where there is one, carries the tail of
    the failing process's stderr.
    """
