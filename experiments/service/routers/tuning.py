"""``/tuning``: what is applied and running now, the history of applied configurations, convergence
of the studies, apply and rollback (CLI twins: ``novatune status|history|convergence|apply|rollback``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from experiments.service.deps import DataDir, Index, ReadAccess, WriteAccess
from experiments.service.routers.continuous import register as _register_continuous

__all__ = ["ApplyRequest", "router"]

router = APIRouter(prefix="/tuning", tags=["tuning"])

_APPLY_ID = Annotated[str, Path(description="an application id (see /tuning/history)",
                                pattern=r"^[A-Za-z0-9_.:-]{1,80}$")]


def _as_dict(obj: Any) -> Any:
    if hasattr(obj, "as_dict"):
        return obj.as_dict()
    if isinstance(obj, list):
        return [_as_dict(o) for o in obj]
    return obj


@router.get("/status", summary="Running studies, the configurations applied to stay (with drift) and the "
                               "continuous tuners (state, cycle, convergence, current configuration)")
def tuning_status(paths: DataDir, index: Index, _: ReadAccess) -> dict[str, Any]:
    from experiments.autotune.service import summaries
    from experiments.deploy.applications import status

    running = [s for s in json.loads(index.listing()) if s["state"] in ("starting", "running", "stopping")]
    return {"studies": running, "applied": _as_dict(status(paths)), "continuous": summaries(paths)}


@router.get("/history", summary="Configurations applied with `novatune apply` (newest first) and their rollbacks")
def tuning_history(paths: DataDir, _: ReadAccess,
                   limit: Annotated[int, Query(ge=1, le=10_000, description="at most this many")] = 100
                   ) -> list[dict[str, Any]]:
    from experiments.deploy.applications import history

    return _as_dict(history(paths))[:limit]


@router.get("/convergence", responses={404: {"description": "no study of that name"}},
            summary="Each study's convergence state and why it stopped")
def tuning_convergence(index: Index, _: ReadAccess,
                       study: Annotated[str | None, Query(max_length=64, description="only this study")] = None
                       ) -> list[dict[str, Any]]:
    return index.convergence(study)


class ApplyRequest(BaseModel):
    """What to apply to stay: an exported configuration, or a study's trial."""

    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] | None = Field(default=None, description="a novatune.config/v1 document (an export)")
    study: str | None = Field(default=None, max_length=64, description="apply this study's trial instead")
    trial: int | None = Field(default=None, ge=0, le=1_000_000, description="trial number (default: the chosen one)")


@router.post("/apply",
             responses={409: {"description": "a knob is held by a running study or an earlier application"},
                        422: {"description": "invalid configuration: unknown knob, value outside its bounds, ..."}},
             summary="Apply a configuration to stay (journaled; undo with /tuning/rollback/{id})")
def tuning_apply(body: ApplyRequest, paths: DataDir, _: WriteAccess,
                 dry_run: Annotated[bool, Query(description="only say what would change")] = False) -> dict[str, Any]:
    from experiments.deploy.apply import apply_config, apply_trial
    from experiments.deploy.config_file import ConfigError

    if body.study is not None and body.config is None:
        return _as_dict(apply_trial(body.study, body.trial, paths=paths, dry_run=dry_run))
    if body.config is not None and body.study is None:
        return _as_dict(apply_config(body.config, paths=paths, dry_run=dry_run, source="POST /tuning/apply"))
    raise ConfigError("give either 'config' (an exported configuration) or 'study' (and optionally 'trial')")


@router.post("/rollback/{application_id}",
             responses={404: {"description": "no application of that id"},
                        422: {"description": "a knob drifted since it was applied (use force), or a journal "
                                             "record names something novatune would not write (nothing "
                                             "changed; force skips it)"}},
             summary="Restore the journaled old values of an applied configuration (or of a continuous tuner's "
                     "step: its id from /tuning/continuous/{id}/history)")
def tuning_rollback(application_id: _APPLY_ID, paths: DataDir, _: WriteAccess,
                    force: Annotated[bool, Query(description="restore even knobs changed since")] = False
                    ) -> dict[str, Any]:
    from experiments.autotune.service import rollback_step
    from experiments.deploy.rollback import rollback

    step = rollback_step(paths, application_id, force=force)
    if step is not None:
        return _as_dict(step["rollback"]) | {"step": step["step"]}
    return _as_dict(rollback(application_id, paths=paths, force=force))


_register_continuous(router)
