"""The errors of the usage history (:mod:`collectors.usage`): one class per thing a user can get wrong."""

from __future__ import annotations

from collectors.errors import CollectorError

__all__ = ["PrometheusError", "PrometheusUnreachable", "TargetNotFound", "TargetVanished", "UnknownTarget",
           "UsageError", "UsageStoreError"]


class UsageError(CollectorError):
    """A bad target spec, option or import of the usage history (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class TargetNotFound(UsageError):
    """The target does not exist on this machine now: no such cgroup, unit or process (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


class TargetVanished(UsageError):
    """An observed target went away (its cgroup was removed, its process exited) (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


class UnknownTarget(UsageError, LookupError):
    """The usage store holds no history of that target (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


class PrometheusError(UsageError):
    """A Prometheus range query failed: a bad query (Prometheus's own error text), an empty result, an answer
    that is not the API's (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class PrometheusUnreachable(PrometheusError):
    """The Prometheus server does not answer (refused, timed out, not HTTP) (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


class UsageStoreError(UsageError):
    """The usage store's file is not novatune's private file (a symbolic link, another owner, a hard link), is
    damaged, or stayed locked past the timeout (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409
