"""The FastAPI application factory.

``create_app(paths, settings)`` builds a fresh app (nothing is built at import time) with, on
``app.state``: the settings, the API token, the :class:`~experiments.study.manager.StudyManager` of
background studies, the cached :class:`~experiments.service.views.StudyIndex` and the
:class:`~experiments.service.exposition.ServiceMetrics` registry. Routes reach them through the
``Annotated`` aliases of :mod:`experiments.service.deps`.
At start-up the manager reconciles the registry (live workers are adopted,
studies whose worker died are resumed) and a watcher thread keeps doing so
every second; at shutdown the workers restore their knobs and stop, to resume
at the next start.

Endpoints: one router per resource (:mod:`experiments.service.routers`): ``/healthz``, ``/metrics``,
``/studies...``, ``/tuning/...``, ``/knobs``, ``/settings``; and ``/openapi.json``, ``/docs``.
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

from experiments.service import errors
from experiments.service.exposition import ServiceMetrics
from experiments.service.routers import ROUTERS
from experiments.service.views import StudyIndex
from experiments.settings import Paths, Settings, api_token
from experiments.study.manager import StudyManager

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
    try:
        yield
    finally:
        stop.set()
        watcher.join(timeout=10)
        manager.shutdown()


def create_app(paths: Paths | None = None, settings: Settings | None = None) -> FastAPI:
    """A new novatune app over the data directory ``paths`` (default: ``Paths.default()``, resolved now)
    with ``settings`` (default: :meth:`Settings.load`).

    Raises:
        SettingsError: ``settings`` not given and the settings file or a ``NOVATUNE_*`` variable is invalid.
    """
    paths = (paths if paths is not None else Paths.default()).ensure()
    settings = settings if settings is not None else Settings.load()
    ver = package_version()
    app = FastAPI(
        title="novatune",
        version=ver,
        description=(
            "Find, apply and prove better settings for Linux hosts, VMs and containers.\n\n"
            "Requests that change something need `Authorization: Bearer <token>` (the token is printed by "
            "`novatune serve`); reads need it too when `require_token_for_reads` is set."
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        lifespan=_lifespan,
        responses={401: {"description": "no or wrong bearer token (writes; reads when require_token_for_reads)"},
                   400: {"description": "the body is not decodable"}},
    )
    app.state.paths = paths
    app.state.version = ver
    app.state.settings = settings
    app.state.token, app.state.token_source = api_token(settings, paths)
    app.state.manager = StudyManager(paths, max_running=settings.max_running_studies,
                                     stop_timeout_s=settings.stop_timeout_s, max_resumes=settings.max_resumes,
                                     tracking_uri=settings.mlflow_tracking_uri)
    app.state.index = StudyIndex(paths, app.state.manager)
    app.state.exposition = ServiceMetrics(paths, version=ver)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
