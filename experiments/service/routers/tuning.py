"""``/tuning``: what is applied and running now, the history of applied configurations, convergence
of the studies, apply and rollback (CLI twins: ``novatune status|history|convergence|apply|rollback``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from experiments.deploy.applications import APPLICATION_ID_RE
from experiments.service.deps import DataDir, Index, ReadAccess, WriteAccess
from experiments.service.routers.continuous import register as _register_continuous

__all__ = ["ApplyRequest", "ValidateOptions", "router"]

router = APIRouter(prefix="/tuning", tags=["tuning"])

_APPLY_ID = Annotated[str, Path(description="an application id (see /tuning/history)",
                                pattern=APPLICATION_ID_RE)]


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


class ValidateOptions(BaseModel):
    """Validate the change before keeping it (the CLI's ``novatune apply CONFIG --validate SPEC``)."""

    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any] = Field(description="the study spec whose workload, trial timing and objectives measure the "
                                             "change, inline (its knobs are not used)")
    window_s: float = Field(default=600.0, gt=0, le=7 * 86400, description="the validation window, seconds")
    max_window_s: float | None = Field(default=None, gt=0, le=21 * 86400,
                                       description="how far an inconclusive result extends it (default 3x)")
    guards: list[str] = Field(default_factory=list, max_length=16,
                              description="METRIC:-N% (default: the spec's first objective and latency_p95_ms, -10%)")
    interleave: bool = Field(default=True, description="alternate A B B A windows (else all before, then after)")


class ApplyRequest(BaseModel):
    """What to apply to stay: an exported configuration, or a study's trial."""

    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] | None = Field(default=None, description="a novatune.config/v1 document (an export)")
    study: str | None = Field(default=None, max_length=64, description="apply this study's trial instead")
    trial: int | None = Field(default=None, ge=0, le=1_000_000, description="trial number (default: the chosen one)")
    validate_: ValidateOptions | None = Field(
        default=None, alias="validate",
        description="validate first (with 'config'): 202 and a validation id; the result at /tuning/validations/{id}")


@router.post("/apply",
             responses={202: {"description": "with 'validate': the validated apply started; poll "
                                             "/tuning/validations/{id}"},
                        409: {"description": "a knob is held by a running study or an earlier application"},
                        422: {"description": "invalid configuration: unknown knob, value outside its bounds, ..."}},
             summary="Apply a configuration to stay (journaled; undo with /tuning/rollback/{id})")
def tuning_apply(body: ApplyRequest, paths: DataDir, request: Request, _: WriteAccess,
                 dry_run: Annotated[bool, Query(description="only say what would change")] = False) -> Any:
    from experiments.deploy.apply import apply_config, apply_trial
    from experiments.deploy.config_file import ConfigError

    if body.validate_ is not None:
        return _start_validation(body, body.validate_, request, dry_run=dry_run)
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
    from experiments.autotune.service import rollback_by_id

    return rollback_by_id(paths, application_id, force=force)


def _start_validation(body: ApplyRequest, opts: ValidateOptions, request: Request, *, dry_run: bool) -> JSONResponse:
    """Check the validated apply now (422 / 409), then run it in the background: 202 and its id."""
    from experiments.spec import parse_spec
    from experiments.validate.checks import ValidationRefused
    from experiments.validate.model import ValidationRequest
    from optimizer.decision import parse_guard

    if body.config is None or body.study is not None or dry_run:
        raise ValidationRefused("'validate' goes with 'config' (an exported configuration), not with 'study' or "
                                "dry_run")
    try:
        guards = tuple(parse_guard(g) for g in opts.guards)
    except ValueError as err:
        raise ValidationRefused(str(err)) from None
    spec = parse_spec(opts.spec, source="validate.spec")
    req = ValidationRequest(values=dict(body.config), source="POST /tuning/apply", spec_path="",
                            window_s=opts.window_s, max_window_s=opts.max_window_s, guards=guards,
                            interleave=opts.interleave)
    report = request.app.state.validated.start(req, spec=spec)
    return JSONResponse(status_code=202, content={"validation": report.id, "decision": report.decision,
                                                  "status": f"/tuning/validations/{report.id}"})


_VALIDATION_ID = Annotated[str, Path(description="a validation id (see /tuning/validations)",
                                     pattern=APPLICATION_ID_RE)]


@router.get("/validations", summary="Validated applies (newest first): decision, reason, before/after per guard")
def tuning_validations(paths: DataDir, _: ReadAccess,
                       limit: Annotated[int, Query(ge=1, le=10_000, description="at most this many")] = 100
                       ) -> list[dict[str, Any]]:
    from experiments.validate.store import list_reports

    return [r.as_dict() for r in list_reports(paths)[:limit]]


@router.get("/validations/{validation_id}", responses={404: {"description": "no validation of that id"}},
            summary="One validated apply's report (decision 'running' while it measures)")
def tuning_validation(validation_id: _VALIDATION_ID, paths: DataDir, _: ReadAccess) -> dict[str, Any]:
    from experiments.validate.store import load_report

    return load_report(paths, validation_id).as_dict()


_register_continuous(router)
