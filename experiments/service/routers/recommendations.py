"""``/recommendations``: ranked advice from the advisors, right-sizing and finished studies, and accepting one
(a validated apply in the background). CLI twin: ``novatune recommend``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from experiments.service.deps import ReadAccess, WriteAccess

__all__ = ["router"]

router = APIRouter(prefix="/recommendations", tags=["recommendations"])

RecId = Annotated[str, Path(description="a recommendation id (GET /recommendations)", pattern=r"^[0-9a-f]{10}$")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no recommendation of that id in the last list"}}


def _engine(request: Request) -> Any:
    from experiments.recommend.engine import Recommendations

    return Recommendations(request.app.state.paths, request.app.state.settings)


@router.get("", summary="Every recommendation, best first (expected impact × confidence ÷ risk, with the money "
                        "saved), each with its evidence; collected anew from this machine")
def recommendations(request: Request, _: ReadAccess,
                    source: Annotated[list[Literal["advisors", "rightsizing", "studies"]] | None, Query(
                        description="advisors | rightsizing | studies (repeat; default: all)",
                        max_length=3)] = None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"root": "/"}
    if source:
        kwargs["sources"] = tuple(source)
    result: dict[str, Any] = _engine(request).collect(**kwargs).as_dict()
    return result


@router.get("/{rec_id}", responses=_NOT_FOUND, summary="One recommendation of the last list, with its evidence")
def recommendation(rec_id: RecId, request: Request, _: ReadAccess) -> dict[str, Any]:
    result: dict[str, Any] = _engine(request).get(rec_id).as_dict()
    return result


class AcceptRequest(BaseModel):
    """How to validate an accepted recommendation (see docs/validation.md)."""

    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any] | None = Field(default=None, description="a study spec, inline, whose workload measures "
                                                                  "the change (required for knob changes)")
    window_s: float | None = Field(default=None, gt=0, le=86_400, description="validation window (default 600 s)")
    max_window_s: float | None = Field(default=None, gt=0, le=259_200, description="longest window (default 3x)")
    guards: list[str] = Field(default_factory=list, max_length=8, description="METRIC:-N% each")


@router.post("/{rec_id}/accept", status_code=202,
             responses={**_NOT_FOUND, 409: {"description": "a manual action, a knob bound to one process, or a "
                                                            "knob held now"},
                        422: {"description": "no spec, a bad spec or guard (nothing written)"}},
             summary="Apply one recommendation with validation, in the background: a validated apply of its knob "
                     "changes (GET /tuning/validations/{id}), or a right-sizing proposal applied and watched")
def accept(rec_id: RecId, body: AcceptRequest, request: Request, _: WriteAccess) -> dict[str, Any]:
    from experiments.spec import parse_spec
    from experiments.validate.checks import ValidationRefused
    from optimizer.decision import parse_guard

    eng = _engine(request)
    advice = eng.to_accept(rec_id)
    client = request.client
    who = f"api:{client.host if client else 'unknown'}"
    if advice.advisor == "rightsizing":
        p, watch, _eng = eng.rightsizing_apply(advice, who=who)
        request.app.state.validations.start(p.id, watch, duration_s=body.window_s, who=who)
        return {"recommendation": rec_id, "proposal": p.id, "state": p.state,
                "status": f"/rightsizing/proposals/{p.id}"}
    if body.spec is None:
        raise ValidationRefused("accepting a knob change needs 'spec': the study spec whose workload validates it")
    try:
        guards = tuple(parse_guard(g) for g in body.guards)
    except ValueError as err:
        raise ValidationRefused(str(err)) from None
    spec = parse_spec(body.spec, source="accept.spec")
    req = eng.validation_request(advice, window_s=body.window_s, max_window_s=body.max_window_s, guards=guards)
    report = request.app.state.validated.start(req, spec=spec)
    return {"recommendation": rec_id, "validation": report.id, "decision": report.decision,
            "status": f"/tuning/validations/{report.id}"}
