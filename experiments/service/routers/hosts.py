"""``/hosts``: the fleet's hosts, what each published, and apply / rollback / right-sizing steps routed to the
agent of a host (CLI twins: ``novatune fleet hosts|show|apply|rollback|rightsize|commands``).

Agents (``novatune agent``) register, heartbeat and publish into the study database; the service reads it
(:class:`~experiments.fleet.hosts.HostRegistry` opened with ``migrate=False``: it never creates a table, and a
database without them lists no host). ``alive`` follows the setting ``fleet_dead_after_s``.

``POST /hosts/{id}/apply`` and ``POST /hosts/{id}/rollback/{application}`` change nothing here: they queue a
command (:mod:`experiments.fleet.state`) that only that host's agent runs, through its own journal, with the
checks ``novatune apply`` makes there (202 and the command; ``GET /hosts/{id}/commands/{n}`` has its answer).
A host whose agent is not alive is refused (409), a knob its facts say is not available there too (422).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from experiments.deploy.applications import APPLICATION_ID_RE
from experiments.fleet.commands import MOVES, route
from experiments.fleet.hosts import HOST_ID_RE, Host, HostRegistry, UnknownHost
from experiments.fleet.state import Command
from experiments.rightsizing.proposals import PROPOSAL_ID_RE
from experiments.service.deps import AppSettings, Fleet, Hosts, ReadAccess, WriteAccess

__all__ = ["HostApply", "router"]

router = APIRouter(prefix="/hosts", tags=["hosts"])

HostId = Annotated[str, Path(description="the host's id (GET /hosts lists them)", pattern=HOST_ID_RE, max_length=64)]
AppId = Annotated[str, Path(description="an application id (the host's published applications)",
                            pattern=APPLICATION_ID_RE)]
Ttl = Annotated[float, Query(gt=0, le=86400, description="seconds the host's agent has to take the command; "
                                                         "after that it is never run (expired)")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    503: {"description": "the study database holding the host registry cannot be read"},
}
_UNKNOWN: dict[int | str, dict[str, Any]] = {404: {"description": "no host of that id is registered"}}
_ROUTED: dict[int | str, dict[str, Any]] = {
    202: {"description": "queued for the host's agent: poll GET /hosts/{id}/commands/{n}"},
    409: {"description": "the host's agent is not alive (nothing was queued)"},
    422: {"description": "arguments that are not allowed, or a knob not available on that host"}, **_UNKNOWN,
    **_ERRORS,
}


class HostApply(BaseModel):
    """What the host's agent applies to stay: an exported configuration, or a study's trial."""

    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] | None = Field(default=None, description="a novatune.config/v1 document or knob -> value")
    study: str | None = Field(default=None, max_length=200, description="apply this study's trial instead (a study "
                                                                        "of the fleet's storage)")
    trial: int | None = Field(default=None, ge=0, le=1_000_000, description="trial number (default: the chosen one)")
    dry_run: bool = Field(default=False, description="only say what would change on that host")


def _known(hosts: HostRegistry, host_id: str) -> Host:
    found = hosts.get(host_id)
    if found is None:
        raise UnknownHost(f"no host {host_id!r} is registered; GET /hosts lists them")
    return found


def _queued(cmd: Command) -> JSONResponse:
    return JSONResponse(cmd.as_dict() | {"poll": f"/hosts/{cmd.host_id}/commands/{cmd.id}"}, status_code=202)


def _by(request: Request) -> str:
    return f"api:{request.client.host if request.client else 'unknown'}"


@router.get("", responses=_ERRORS,
            summary="Every registered agent's host, by id: labels, facts, alive, state, the trial it runs, and how "
                    "many items of each kind it published")
def hosts(hosts: Hosts, fleet: Fleet, settings: AppSettings, _: ReadAccess) -> list[dict[str, Any]]:
    now = time.time()
    counts = fleet.counts()
    return [h.to_dict(now, settings.fleet_dead_after_s) | {"published": counts.get(h.id, {})} for h in hosts.list()]


@router.get("/{host_id}", responses={**_UNKNOWN, **_ERRORS}, summary="One registered host")
def host(host_id: HostId, hosts: Hosts, settings: AppSettings, _: ReadAccess) -> dict[str, Any]:
    return _known(hosts, host_id).to_dict(time.time(), settings.fleet_dead_after_s)


@router.get("/{host_id}/state", responses={**_UNKNOWN, **_ERRORS},
            summary="What the host's agent last published: its service registry of studies, applications, "
                    "recommendations, right-sizing proposals, profiles, continuous tuners (and when)")
def host_state(host_id: HostId, hosts: Hosts, fleet: Fleet, _: ReadAccess) -> dict[str, Any]:
    _known(hosts, host_id)
    return {"host": host_id} | fleet.state(host_id)


@router.post("/{host_id}/apply", status_code=202, responses=_ROUTED,
             summary="Apply a configuration to stay on that host: its agent does it through its own journal")
def host_apply(host_id: HostId, body: HostApply, hosts: Hosts, fleet: Fleet, settings: AppSettings,
               request: Request, _: WriteAccess, ttl_s: Ttl = 300.0) -> JSONResponse:
    return _queued(route(hosts, fleet, host_id, "apply", body.model_dump(exclude_none=True), by=_by(request),
                         ttl_s=ttl_s, dead_after_s=settings.fleet_dead_after_s))


@router.post("/{host_id}/rollback/{application_id}", status_code=202, responses=_ROUTED,
             summary="Roll back an application of that host: its agent restores the journaled old values")
def host_rollback(host_id: HostId, application_id: AppId, hosts: Hosts, fleet: Fleet, settings: AppSettings,
                  request: Request, _: WriteAccess,
                  force: Annotated[bool, Query(description="restore even knobs changed since")] = False,
                  ttl_s: Ttl = 300.0) -> JSONResponse:
    return _queued(route(hosts, fleet, host_id, "rollback", {"application": application_id, "force": force},
                         by=_by(request), ttl_s=ttl_s, dead_after_s=settings.fleet_dead_after_s))


@router.post("/{host_id}/rightsizing/{move}/{proposal_id}", status_code=202, responses=_ROUTED,
             summary="A step of a right-sizing proposal of that host (approve, reject, apply with its validation "
                     "period, rollback): its agent takes it as POST /rightsizing/MOVE/ID would there")
def host_rightsize(host_id: HostId, move: Annotated[str, Path(pattern="^(" + "|".join(MOVES) + ")$")],
                   proposal_id: Annotated[str, Path(pattern=PROPOSAL_ID_RE)], hosts: Hosts, fleet: Fleet,
                   settings: AppSettings, request: Request, _: WriteAccess,
                   note: Annotated[str | None, Query(max_length=500, description="why (kept in the history)")] = None,
                   validate_s: Annotated[float | None, Query(ge=1, le=7 * 86400, description="apply: the validation "
                                                                                            "period")] = None,
                   ttl_s: Ttl = 300.0) -> JSONResponse:
    args: dict[str, Any] = {"proposal": proposal_id, "move": move, "note": note, "validate_s": validate_s}
    return _queued(route(hosts, fleet, host_id, "rightsize", args, by=_by(request), ttl_s=ttl_s,
                         dead_after_s=settings.fleet_dead_after_s))


@router.get("/{host_id}/commands", responses={**_UNKNOWN, **_ERRORS},
            summary="The commands routed to that host, newest first, with their answers")
def host_commands(host_id: HostId, hosts: Hosts, fleet: Fleet, _: ReadAccess,
                  limit: Annotated[int, Query(ge=1, le=1000, description="at most this many")] = 100
                  ) -> list[dict[str, Any]]:
    _known(hosts, host_id)
    return [c.as_dict() for c in fleet.commands(host_id, limit=limit)]


@router.get("/{host_id}/commands/{command_id}", responses={404: {"description": "no such host or command"},
                                                          **_ERRORS},
            summary="One command: pending, running, done (its result), failed (why), expired or interrupted")
def host_command(host_id: HostId, command_id: Annotated[int, Path(ge=1, le=2**31 - 1)], hosts: Hosts, fleet: Fleet,
                 _: ReadAccess) -> dict[str, Any]:
    _known(hosts, host_id)
    cmd = fleet.command(command_id)
    if cmd is None or cmd.host_id != host_id:
        raise UnknownHost(f"host {host_id!r} has no command {command_id}; GET /hosts/{host_id}/commands lists them")
    return cmd.as_dict()
