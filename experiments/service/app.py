"""The FastAPI application factory.

``create_app(paths)`` builds a fresh app with its own metrics registry and host
sampler (kept on ``app.state``); nothing is built at import time. Endpoints:

- ``GET /healthz``: ``{"status": "ok", "version": ..., "data_dir": ...}``
- ``GET /metrics``: Prometheus text exposition (see :mod:`experiments.service.metrics`)
- ``GET /openapi.json``, ``GET /docs``: the OpenAPI schema and its UI

Routes are plain ``def``: they read ``/proc``, ``/sys`` and the SQLite study
store, so FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from experiments.service.metrics import ServiceMetrics
from experiments.settings import Paths

__all__ = ["Health", "create_app", "package_version"]


def package_version() -> str:
    """The installed novatune version (``0+unknown`` when run from a tree that is not installed)."""
    try:
        return version("novatune")
    except PackageNotFoundError:
        return "0+unknown"


class Health(BaseModel):
    status: str
    version: str
    data_dir: str


ops = APIRouter(tags=["operations"])


@ops.get("/healthz", response_model=Health, summary="Liveness: the service answers")
def healthz(request: Request) -> Health:
    state = request.app.state
    return Health(status="ok", version=state.version, data_dir=str(state.paths.home))


@ops.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics: host, tuner state, build info",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition"}},
)
def metrics(request: Request) -> Response:
    return Response(content=request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


def create_app(paths: Paths | None = None) -> FastAPI:
    """A new novatune app over the data directory ``paths`` (default: ``Paths.default()``, resolved now)."""
    paths = paths if paths is not None else Paths.default()
    ver = package_version()
    app = FastAPI(
        title="novatune",
        version=ver,
        description="Find, apply and prove better settings for Linux hosts, VMs and containers.",
        openapi_url="/openapi.json",
        docs_url="/docs",
    )
    app.state.paths = paths
    app.state.version = ver
    app.state.metrics = ServiceMetrics(paths, version=ver)
    app.include_router(ops)
    return app
