"""The FastAPI application factory.

``create_app(paths, settings)`` builds a fresh app (nothing is built at import time) with, on
``app.state``: the settings, the API token, the :class:`~experiments.study.manager.StudyManager` of
background studies, the cached :class:`~experiments.service.views.StudyIndex` and the
:class:`~experiments.service.exposition.ServiceMetrics` registry. Routes reach them through the
``Annotated`` aliases of :mod:`experiments.service.deps`.
At start-up the manager reconciles the registry (live workers are adopted,
studies whose worker died are resumed) and a watcher thread keeps doing so
every second; at shutdown the workers restore their knobs and stop, to resume
at the next start. The targets of the setting ``observe_targets`` are sampled into the usage store by a
thread started and stopped with the app (``app.state.observing``,
:class:`~experiments.rightsizing.observing.ObservingService`).

Endpoints: one router per resource (:mod:`experiments.service.routers`): ``/healthz``, ``/metrics``,
``/studies...``, ``/tuning/...``, ``/knobs``, ``/settings``, ``/hosts``; and ``/openapi.json``, ``/docs`` and
``/redoc`` with local assets (:mod:`experiments.service.docs`).
Every request first passes the guard (:mod:`experiments.service.guard`, the outermost middleware:
Host allow-list, body size, the token from the headers, the body read with a limit and a deadline)
with the token rule of :mod:`experiments.service.auth` (``app.state.auth``).
Errors: :mod:`experiments.service.errors` (one handler for the ``NovatuneError`` root).
Routes that read files or the SQLite stores are plain ``def`` (the thread pool);
the two cached study reads are ``async``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version

from fastapi import FastAPI

from experiments.autotune.service import ContinuousTuners
from experiments.fleet.hosts import HostRegistry
from experiments.fleet.state import FleetState
from experiments.profiling.sessions import ProfilingSessions
from experiments.rightsizing.background import Validations
from experiments.rightsizing.observing import ObservingService
from experiments.service import docs, errors
from experiments.service.auth import Authenticator, AuthFailures
from experiments.service.exposition import ServiceMetrics
from experiments.service.guard import Guard
from experiments.service.routers import ROUTERS
from experiments.service.views import StudyIndex
from experiments.settings import Paths, Settings, api_token
from experiments.study.manager import StudyManager
from experiments.validate.background import ValidationRunner

__all__ = ["create_app", "package_version"]

log = logging.getLogger(__name__)

#: seconds between two looks of the watcher at the background studies
WATCH_INTERVAL_S = 1.0


def package_version() -> str:
    """The installed novatune version (``0+unknown`` when run from a tree that is not installed)."""
    try:
        return version("novatune")
    except PackageNotFoundError:
        return "0+unknown"


def _watch(app: FastAPI, stop: threading.Event) -> None:
    while not stop.wait(WATCH_INTERVAL_S):
        try:
            for line in app.state.manager.reconcile():
                log.info("%s", line)
        except Exception:  # the watcher must outlive a bad moment (a locked database, ...)
            log.exception("watching the background studies failed; retrying")


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    manager: StudyManager = app.state.manager
    for line in manager.reconcile():
        log.info("%s", line)
    stop = threading.Event()
    watcher = threading.Thread(target=_watch, args=(app, stop), name="novatune-watcher", daemon=True)
    watcher.start()
    app.state.observing.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=10)
        app.state.observing.stop()
        app.state.profiling.shutdown()
        app.state.validations.shutdown()
        app.state.continuous.shutdown()
        app.state.validated.shutdown()
        manager.shutdown()
        app.state.hosts.close()


#: what the guard may answer to any request, in the OpenAPI schema
_REFUSALS: dict[int | str, dict[str, object]] = {
    400: {"description": "a Host this service does not answer for, a malformed request head, or an "
                         "undecodable body"},
    401: {"description": "no or wrong bearer token (writes; reads when require_token_for_reads)"},
    408: {"description": "the request body did not arrive within read_timeout_s"},
    413: {"description": "the request body is over max_body_bytes"},
    429: {"description": "too many failed authentications from this address: retry after Retry-After seconds"},
}


def create_app(paths: Paths | None = None, settings: Settings | None = None, *,
               bind_host: str | None = None) -> FastAPI:
    """A new novatune app over the data directory ``paths`` (default: ``Paths.default()``, resolved now)
    with ``settings`` (default: :meth:`Settings.load`); ``bind_host`` (default: the ``host`` setting) is
    a name the Host header may carry besides loopback and ``allowed_hosts``.

    Raises:
        SettingsError: ``settings`` not given and the settings file or a ``NOVATUNE_*`` variable is invalid,
            or the token file holds too short a token.
    """
    paths = (paths if paths is not None else Paths.default()).ensure()
    settings = settings if settings is not None else Settings.load()
    ver = package_version()
    app = FastAPI(
        title="novatune",
        version=ver,
        description=(
            "Find, apply and prove better settings for Linux hosts, VMs and containers.\n\n"
            "Requests that change something need `Authorization: Bearer <token>` (the token is kept in "
            "`<data dir>/api-token`, mode 0600, unless `NOVATUNE_API_TOKEN` is set); reads need it too when "
            "`require_token_for_reads` is set."
        ),
        openapi_url="/openapi.json",
        docs_url=None,  # served by experiments.service.docs, with local assets
        redoc_url=None,
        lifespan=_lifespan,
        responses=_REFUSALS,
    )
    app.state.paths = paths
    app.state.version = ver
    app.state.settings = settings
    app.state.token, app.state.token_source = api_token(settings, paths)
    app.state.auth = Authenticator(app.state.token, settings=settings, failures=AuthFailures(
        limit=settings.auth_failure_limit, lockout_s=settings.auth_lockout_s))
    app.state.manager = StudyManager(paths, max_running=settings.max_running_studies,
                                     stop_timeout_s=settings.stop_timeout_s, max_resumes=settings.max_resumes,
                                     tracking_uri=settings.mlflow_tracking_uri)
    app.state.index = StudyIndex(paths, app.state.manager)
    app.state.profiling = ProfilingSessions(paths.profiles, settings)
    app.state.observing = ObservingService(paths, settings)
    app.state.validations = Validations(paths, settings)
    app.state.continuous = ContinuousTuners(paths, settings)
    app.state.validated = ValidationRunner(paths)
    app.state.hosts = HostRegistry(paths.optuna_url, migrate=False)  # read-only: connects at the first read
    app.state.fleet = FleetState(app.state.hosts)  # the hosts' published state, the commands for their agents
    app.state.exposition = ServiceMetrics(paths, version=ver, hosts=app.state.hosts,
                                          dead_after_s=lambda: app.state.settings.fleet_dead_after_s)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(docs.router)
    app.add_middleware(Guard, auth=app.state.auth,  # added last: the outermost, before any other code
                       allowed_hosts=[*settings.allowed_hosts, bind_host or settings.host],
                       max_body_bytes=settings.max_body_bytes, read_timeout_s=settings.read_timeout_s)
    return app

