"""The service's routers, one per resource, each with its prefix; :data:`ROUTERS` is the order
:func:`~experiments.service.app.create_app` includes them in (the order of the OpenAPI schema).

A new resource: a module here with ``router = APIRouter(prefix="/thing", tags=["thing"])``, its routes
asking for what they need through :mod:`experiments.service.deps`, added to :data:`ROUTERS`; its CLI
twin goes to ``experiments/cli/`` (one module per resource) and docs/api.md lists both.
"""

from __future__ import annotations

from fastapi import APIRouter

from experiments.service.routers import (
    bench,
    hosts,
    knobs,
    operations,
    profiling,
    recommendations,
    rightsizing,
    settings,
    studies,
    tuning,
)

__all__ = ["ROUTERS"]

ROUTERS: tuple[APIRouter, ...] = (
    operations.health_router,   # /healthz
    operations.metrics_router,  # /metrics
    studies.router,             # /studies
    tuning.router,              # /tuning
    knobs.router,               # /knobs
    settings.router,            # /settings
    profiling.router,           # /profiling
    rightsizing.router,         # /rightsizing
    rightsizing.cost_router,    # /cost
    recommendations.router,     # /recommendations
    bench.router,               # /bench
    hosts.router,               # /hosts
)
