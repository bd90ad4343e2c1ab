"""``/healthz`` (liveness; CLI twin: ``novatune health``) and ``/metrics`` (the Prometheus exposition of
:mod:`experiments.service.exposition`): one router each, both tagged ``operations``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from experiments.service.deps import DataDir, Exposition, ReadAccess

__all__ = ["Health", "health_router", "metrics_router"]

health_router = APIRouter(prefix="/healthz", tags=["operations"])
metrics_router = APIRouter(prefix="/metrics", tags=["operations"])


class Health(BaseModel):
    status: str
    version: str
    data_dir: str


@health_router.get("", response_model=Health, summary="Liveness: the service answers")
def healthz(request: Request, paths: DataDir) -> Health:
    return Health(status="ok", version=request.app.state.version, data_dir=str(paths.home))


@metrics_router.get(
    "",
    response_class=Response,
    summary="Prometheus metrics: host, tuner state, build info",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text exposition"}},
)
def metrics(exposition: Exposition, _: ReadAccess) -> Response:
    return Response(content=exposition.render(), media_type=CONTENT_TYPE_LATEST)
