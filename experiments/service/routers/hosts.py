"""``/hosts``: the fleet's host registry, read-only (CLI twin: ``novatune fleet hosts``).

Agents (``novatune agent``) register and heartbeat into the study database; the service only reads it
(:class:`~experiments.fleet.hosts.HostRegistry` opened with ``migrate=False``: it never creates the table,
and a database without it lists no host). ``alive`` follows the setting ``fleet_dead_after_s``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path

from experiments.fleet.hosts import HOST_ID_RE, UnknownHost
from experiments.service.deps import AppSettings, Hosts, ReadAccess

__all__ = ["router"]

router = APIRouter(prefix="/hosts", tags=["hosts"])

HostId = Annotated[str, Path(description="the host's id (GET /hosts lists them)", pattern=HOST_ID_RE, max_length=64)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"description": "the study database holding the host registry cannot be read"},
}


@router.get("", responses=_ERRORS,
            summary="Every registered agent's host, by id: labels, facts, alive, state, the trial it runs")
def hosts(hosts: Hosts, settings: AppSettings, _: ReadAccess) -> list[dict[str, Any]]:
    now = time.time()
    return [h.to_dict(now, settings.fleet_dead_after_s) for h in hosts.list()]


@router.get("/{host_id}", responses={404: {"description": "no host of that id is registered"}, **_ERRORS},
            summary="One registered host")
def host(host_id: HostId, hosts: Hosts, settings: AppSettings, _: ReadAccess) -> dict[str, Any]:
    found = hosts.get(host_id)
    if found is None:
        raise UnknownHost(f"no host {host_id!r} is registered; GET /hosts lists them")
    return found.to_dict(time.time(), settings.fleet_dead_after_s)
