"""What a route may ask for, as ``Annotated`` aliases (FastAPI's "bigger applications" style).

A route names what it needs by type and FastAPI passes it::

    @router.post("/{study_id}/stop")
    def stop_study(study_id: StudyId, manager: Manager, index: Index, _: WriteAccess) -> Response: ...

Everything comes from ``app.state``, built once by :func:`~experiments.service.app.create_app`
(nothing is built at import time). A test builds the app over its own data directory and settings
(``create_app(paths, settings)``) or replaces one getter with ``app.dependency_overrides``.

The getters are ``async`` on purpose: they only read ``app.state``, so FastAPI runs them inline
instead of handing each to the thread pool (the cached study reads stay cheap).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from experiments.fleet.hosts import HostRegistry
from experiments.fleet.state import FleetState
from experiments.service.auth import read_access, write_access
from experiments.service.exposition import ServiceMetrics
from experiments.service.views import StudyIndex
from experiments.settings import Paths, Settings
from experiments.study.manager import StudyManager

__all__ = [
    "AppSettings",
    "DataDir",
    "Exposition",
    "Fleet",
    "Hosts",
    "Index",
    "Manager",
    "ReadAccess",
    "WriteAccess",
    "get_app_settings",
    "get_exposition",
    "get_fleet",
    "get_hosts",
    "get_index",
    "get_manager",
    "get_paths",
]


async def get_paths(request: Request) -> Paths:
    """The data directory the app serves."""
    paths: Paths = request.app.state.paths
    return paths


async def get_app_settings(request: Request) -> Settings:
    """The app's settings (``PATCH /settings`` changes the safe ones in place)."""
    settings: Settings = request.app.state.settings
    return settings


async def get_manager(request: Request) -> StudyManager:
    """The registry and launcher of the background studies."""
    manager: StudyManager = request.app.state.manager
    return manager


async def get_index(request: Request) -> StudyIndex:
    """The cached summaries of every study (``GET /studies``)."""
    index: StudyIndex = request.app.state.index
    return index


async def get_exposition(request: Request) -> ServiceMetrics:
    """The registry behind ``GET /metrics``."""
    exposition: ServiceMetrics = request.app.state.exposition
    return exposition


async def get_hosts(request: Request) -> HostRegistry:
    """The fleet's host registry in the study database, read-only (``migrate=False``: creates nothing)."""
    hosts: HostRegistry = request.app.state.hosts
    return hosts


async def get_fleet(request: Request) -> FleetState:
    """The fleet's copy of every host's state and the commands routed to the hosts' agents."""
    fleet: FleetState = request.app.state.fleet
    return fleet


DataDir = Annotated[Paths, Depends(get_paths)]
AppSettings = Annotated[Settings, Depends(get_app_settings)]
Manager = Annotated[StudyManager, Depends(get_manager)]
Index = Annotated[StudyIndex, Depends(get_index)]
Exposition = Annotated[ServiceMetrics, Depends(get_exposition)]
Hosts = Annotated[HostRegistry, Depends(get_hosts)]
Fleet = Annotated[FleetState, Depends(get_fleet)]
#: the request needs the API token when ``require_token_for_reads`` is set (401 otherwise)
ReadAccess = Annotated[None, Depends(read_access)]
#: the request changes something: it needs the API token (401 otherwise)
WriteAccess = Annotated[None, Depends(write_access)]
