"""``/tuning``: what is applied and running now, the history of applied configurations,
convergence of the studies, rollback; ``/knobs``; ``/settings``."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from experiments.service.auth import read_access, write_access
from experiments.settings import RUNTIME_SETTINGS

__all__ = ["router"]

router = APIRouter()

_APPLY_ID = Annotated[str, Path(description="an application id (see /tuning/history)", pattern=r"^[A-Za-z0-9_.:-]{1,80}$")]


def _as_dict(obj: Any) -> Any:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if isinstance(obj, list):
        return [_as_dict(o) for o in obj]
    return obj


def _summaries(request: Request) -> list[dict[str, Any]]:
    return json.loads(request.app.state.index.listing())


@router.get("/tuning/status", tags=["tuning"], dependencies=[Depends(read_access)],
            summary="Running studies and the configurations applied to stay (with drift)")
def tuning_status(request: Request) -> dict[str, Any]:
    from experiments import apply

    running = [s for s in _summaries(request) if s["state"] in ("starting", "running", "stopping")]
    return {"studies": running, "applied": _as_dict(apply.status(request.app.state.paths))}


@router.get("/tuning/history", tags=["tuning"], dependencies=[Depends(read_access)],
            summary="Configurations applied with `novatune apply` (newest first) and their rollbacks")
def tuning_history(request: Request,
                   limit: Annotated[int, Query(ge=1, le=10_000, description="at most this many")] = 100
                   ) -> list[dict[str, Any]]:
    from experiments import apply

    return _as_dict(apply.history(request.app.state.paths))[:limit]


@router.get("/tuning/convergence", tags=["tuning"], dependencies=[Depends(read_access)],
            responses={404: {"description": "no study of that name"}},
            summary="Each study's convergence state and why it stopped")
def tuning_convergence(request: Request,
                       study: Annotated[str | None, Query(max_length=64, description="only this study")] = None
                       ) -> list[dict[str, Any]]:
    return request.app.state.index.convergence(study)


class ApplyRequest(BaseModel):
    """What to apply to stay: an exported configuration, or a study's trial."""

    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] | None = Field(default=None, description="a novatune.config/v1 document (an export)")
    study: str | None = Field(default=None, max_length=64, description="apply this study's trial instead")
    trial: int | None = Field(default=None, ge=0, le=1_000_000, description="trial number (default: the chosen one)")


@router.post("/tuning/apply", tags=["tuning"], dependencies=[Depends(write_access)],
             responses={409: {"description": "a knob is held by a running study or an earlier application"},
                        422: {"description": "invalid configuration: unknown knob, value outside its bounds, ..."}},
             summary="Apply a configuration to stay (journaled; undo with /tuning/rollback/{id})")
def tuning_apply(request: Request, body: ApplyRequest,
                 dry_run: Annotated[bool, Query(description="only say what would change")] = False) -> dict[str, Any]:
    from experiments import apply
    from experiments.config import ConfigError

    paths = request.app.state.paths
    if (body.config is None) == (body.study is None):
        raise ConfigError("give either 'config' (an exported configuration) or 'study' (and optionally 'trial')")
    if body.study is not None:
        return _as_dict(apply.apply_trial(body.study, body.trial, paths=paths, dry_run=dry_run))
    return _as_dict(apply.apply_config(body.config, paths=paths, dry_run=dry_run, source="POST /tuning/apply"))


@router.post("/tuning/rollback/{application_id}", tags=["tuning"], dependencies=[Depends(write_access)],
             responses={404: {"description": "no application of that id"},
                        422: {"description": "a knob drifted since it was applied (use force)"}},
             summary="Restore the journaled old values of an applied configuration")
def tuning_rollback(request: Request, application_id: _APPLY_ID,
                    force: Annotated[bool, Query(description="restore even knobs changed since")] = False
                    ) -> dict[str, Any]:
    from experiments import apply

    return _as_dict(apply.rollback(application_id, paths=request.app.state.paths, force=force))


# -------------------------------------------------------------------- knobs
@router.get("/knobs", tags=["knobs"], dependencies=[Depends(read_access)],
            summary="Every knob on this machine: available or not (and why), current value, bounds, risk")
def knobs(request: Request) -> list[dict[str, Any]]:
    from actuators import Catalog, KnobContext
    from experiments.config import instance_types, knob_info

    return [knob_info(k) for k in Catalog(context=KnobContext(instance_types=instance_types())).knobs()]


@router.get("/knobs/{name}", tags=["knobs"], dependencies=[Depends(read_access)],
            responses={404: {"description": "no such knob"}}, summary="One knob")
def knob(request: Request, name: Annotated[str, Path(max_length=200)]) -> dict[str, Any]:
    from actuators import Catalog, KnobContext
    from experiments.config import instance_types, knob_info

    return knob_info(Catalog(context=KnobContext(instance_types=instance_types())).get(name))


# ----------------------------------------------------------------- settings
class SettingsPatch(BaseModel):
    """Settings that can change while the service runs; none of them weakens a safety bound."""

    model_config = ConfigDict(extra="forbid")
    max_running_studies: int | None = Field(default=None, ge=1, le=16)
    stop_timeout_s: float | None = Field(default=None, ge=1, le=3600)
    require_token_for_reads: bool | None = None
    log_level: str | None = Field(default=None, pattern="^(debug|info|warning|error)$")


def _settings_view(request: Request) -> dict[str, Any]:
    s = request.app.state.settings
    data = s.model_dump(mode="json", exclude={"api_token"})
    data["api_token"] = f"set ({request.app.state.token_source})"
    data["runtime_changeable"] = list(RUNTIME_SETTINGS)
    return data


@router.get("/settings", tags=["settings"], dependencies=[Depends(read_access)],
            summary="The service's settings (the token is never shown)")
def get_settings(request: Request) -> dict[str, Any]:
    return _settings_view(request)


@router.patch("/settings", tags=["settings"], dependencies=[Depends(write_access)],
              responses={422: {"description": "a setting that cannot change at runtime, or a bad value"}},
              summary="Change safe settings while the service runs (not persisted)")
def patch_settings(request: Request, patch: SettingsPatch) -> dict[str, Any]:
    state = request.app.state
    changes = patch.model_dump(exclude_none=True)
    for key, value in changes.items():
        setattr(state.settings, key, value)
    state.manager.max_running = state.settings.max_running_studies
    state.manager.stop_timeout_s = state.settings.stop_timeout_s
    logging.getLogger("experiments").setLevel(state.settings.log_level.upper())
    return _settings_view(request)
