"""One error root for both faces: every NovatuneError carries its exit code and HTTP status.

The table below is the behaviour the CLI's and the API's separate lists had before the root existed;
a new subclass must be added to it (the walk over the class tree finds any that is not).
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import actuators
import collectors
import experiments
from collectors.errors import NovatuneError

#: class name -> (exit code, HTTP status)
TABLE = {
    "NovatuneError": (2, 422),
    "CollectorError": (2, 422),
    "WorkloadError": (2, 422),
    "TargetRefused": (2, 422),
    "AdapterError": (2, 422),
    "PathRefused": (2, 422),
    "ActuatorError": (2, 422),
    "UnknownKnob": (2, 404),
    "ProtectedInterface": (2, 422),
    "OutOfBounds": (2, 422),
    "KnobUnavailable": (2, 422),
    "UnsafePath": (2, 422),
    "Refused": (2, 422),
    "SpecError": (2, 422),
    "ConfigError": (2, 422),
    "SettingsError": (2, 422),
    "StorageError": (2, 422),
    "TrackingStoreError": (2, 409),
    "StudyNotFound": (2, 404),
    "StudyConflict": (2, 409),
    "AutotuneError": (2, 422),
    "AutotuneNotFound": (2, 404),
    "AutotuneConflict": (2, 409),
    "ProposalError": (2, 422),
    "InvalidTransition": (2, 409),
    "UnknownProposal": (2, 404),
    "UnsafeProposalStore": (2, 409),
    "StudyStateError": (2, 409),
    "KnobHeld": (2, 409),
    "ExportError": (2, 409),
    "ExportRequestError": (2, 422),
    "ApplyError": (2, 422),
    "ApplyConflict": (2, 409),
    "ApplicationNotFound": (2, 404),
    "UserError": (2, 422),
    "BenchNotFound": (2, 404),
    "BenchStoreError": (2, 409),
    "BenchRefused": (2, 422),
    "BenchRunError": (2, 409),
    "NetnsError": (2, 422),
    "GainError": (2, 422),
    "TunedProfileError": (2, 422),
    # the API's guard (tests/security/test_api.py) and how the service is exposed
    "RequestRefused": (2, 400),
    "HostNotAllowed": (2, 400),
    "MalformedRequest": (2, 400),
    "RequestTooLarge": (2, 413),
    "RequestTimedOut": (2, 408),
    "TokenRequired": (2, 401),
    "TooManyAuthFailures": (2, 429),
    "InsecureBind": (2, 422),
    "UnsafeLocation": (2, 409),
    "InvalidName": (2, 422),
    # the profiler (issue 14)
    "ProfileError": (2, 422),
    "UnknownProfile": (2, 404),
    "UnsafeStore": (2, 409),
    "ProfileTargetError": (2, 422),
    "ProfileTargetNotFound": (2, 404),
    "ProfileTargetRefused": (2, 403),
    "NotAPythonProcess": (2, 422),
    "ProfileTargetExited": (2, 409),
    "EmptyProfile": (2, 409),
    "ProfilerUnavailable": (2, 409),
    "UnknownSession": (2, 404),
    "SessionConflict": (2, 409),
    # right-sizing (issue 15)
    "TraceError": (2, 422),
    "RightsizingError": (2, 422),
    "UnknownRecommendation": (2, 404),
    "NotAcceptable": (2, 409),
    # the usage history of running targets (collectors.usage)
    "UsageError": (2, 422),
    "TargetNotFound": (2, 404),
    "TargetVanished": (2, 409),
    "UnknownTarget": (2, 404),
    "UsageStoreError": (2, 409),
    "PrometheusError": (2, 422),
    "PrometheusUnreachable": (2, 409),
    "ValidationRefused": (2, 422),
    "ValidationNotFound": (2, 404),
    # the fleet's host registry (issue 19)
    "InvalidHost": (2, 422),
    "UnknownHost": (2, 404),
    "InvalidCommand": (2, 422),
    "HostAway": (2, 409),
    "HostStoreError": (2, 503),
}

#: the builtin bases kept, so that ``except ValueError`` / ``except LookupError`` sites still catch them
BUILTIN_BASES = {
    "UnknownKnob": LookupError, "OutOfBounds": ValueError, "SpecError": ValueError, "ConfigError": ValueError,
    "SettingsError": ValueError, "StorageError": ValueError, "StudyNotFound": LookupError, "ExportError": ValueError,
    "ExportRequestError": ValueError, "ApplyError": ValueError, "ApplyConflict": ValueError,
    "ApplicationNotFound": LookupError, "InvalidName": ValueError, "ProtectedInterface": LookupError,
    "UnknownProfile": LookupError, "UnknownTarget": LookupError,
    "ValidationRefused": ValueError, "ValidationNotFound": LookupError,
    "InvalidHost": ValueError, "UnknownHost": LookupError, "InvalidCommand": ValueError,
}


def _import_all() -> None:
    for package in (collectors, actuators, experiments):
        for mod in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if mod.name.endswith(("__main__", ".worker")):
                continue
            importlib.import_module(mod.name)


def _subclasses(cls: type) -> set[type]:
    out = {cls}
    for sub in cls.__subclasses__():
        out |= _subclasses(sub)
    return out


def test_every_novatune_error_has_its_exit_code_and_http_status():
    _import_all()
    found = {cls.__name__: cls for cls in _subclasses(NovatuneError) if cls.__module__.split(".")[0] != "tests"}
    assert set(found) == set(TABLE), "add the new error to TABLE (and choose its exit code and status)"
    assert {name: (cls.exit_code, cls.http_status) for name, cls in found.items()} == TABLE
    for name, base in BUILTIN_BASES.items():
        assert issubclass(found[name], base), name


def test_the_cli_prints_a_novatune_error_on_one_line_with_its_exit_code(monkeypatch, capsys):
    from experiments import cli

    class Teapot(NovatuneError):
        exit_code = 3

    def boom() -> None:
        raise Teapot("no tea\nhere")

    monkeypatch.setattr(cli.app, "registered_commands", [])
    cli.app.command("boom")(boom)
    assert cli.main(["boom"]) == 3
    err = capsys.readouterr().err
    assert "error: no tea" in err and "Traceback" not in err


@pytest.mark.parametrize(("status", "problems"), [(404, None), (409, None), (422, ["a", "b"])])
def test_the_api_answers_a_novatune_error_with_its_status_and_body(status, problems):
    from experiments.service import errors

    class Failing(NovatuneError):
        http_status = status

        def __init__(self) -> None:
            super().__init__("it failed")
            if problems:
                self.problems = problems

    app = FastAPI()
    errors.install(app)

    @app.get("/fail")
    def fail() -> None:
        raise Failing()

    @app.get("/bug")
    def bug() -> None:
        raise RuntimeError("a bug")

    client = TestClient(app, raise_server_exceptions=False)
    r = client.get("/fail")
    expected = {"detail": "it failed", "error": "Failing"}
    if problems:
        expected = {"detail": "invalid study spec: 2 problem(s)", "error": "Failing", "problems": problems}
    assert (r.status_code, r.json()) == (status, expected)
    r = client.get("/bug")
    assert (r.status_code, r.json()["error"]) == (500, "InternalError")
