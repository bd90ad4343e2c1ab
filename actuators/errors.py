"""Exceptions of the actuators package.

Every error an actuator raises on purpose derives from :class:`ActuatorError`,
so a runner can catch the family with one clause. OS errors are translated at
the boundary (``raise ActuatorError(...) from err``).
"""

from __future__ import annotations

from collectors.errors import NovatuneError

__all__ = ["ActuatorError", "KnobUnavailable", "OutOfBounds", "ProtectedInterface", "UnknownKnob", "UnsafePath"]


class ActuatorError(NovatuneError):
    """Base class: a change could not be planned, applied, verified or restored (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class UnknownKnob(ActuatorError, LookupError):
    """A knob name that is not in the catalog; the message lists what is allowed (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


class ProtectedInterface(UnknownKnob):
    """A ``nic.*`` knob of a protected network interface (by default, one carrying a default route): never
    offered nor applied; the message names the interface, why it is protected and the setting that lists
    it (exit 2, HTTP 422). An :class:`UnknownKnob`, so every site that lists unknown knobs lists it too."""

    exit_code = 2
    http_status = 422


class OutOfBounds(ActuatorError, ValueError):
    """A value outside a knob's hard safety bounds (or of the wrong type); nothing was written (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class KnobUnavailable(ActuatorError):
    """The knob exists but cannot be used here (missing file, no privilege, no cgroup, no pids): exit 2, HTTP 422."""

    exit_code = 2
    http_status = 422


class UnsafePath(ActuatorError):
    """A path that would leave the configured root or the allowed kernel trees (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422
