"""``/rightsizing``: recommendations for observed targets, the approval workflow (approve, reject, apply with a
validation period, roll back) and its history; ``/cost``: offers, the cost/risk front, purchase plans, the
predicted cost and the savings (CLI twins: ``novatune rightsize ...``, ``novatune cost ...``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from experiments.rightsizing.engine import Rightsizing
from experiments.rightsizing.proposals import PROPOSAL_ID_RE
from experiments.service.deps import ReadAccess, WriteAccess

__all__ = ["cost_router", "router"]

router = APIRouter(prefix="/rightsizing", tags=["rightsizing"])
cost_router = APIRouter(prefix="/cost", tags=["cost"])

ProposalId = Annotated[str, Path(description="a proposal's id (GET /rightsizing/recommendations)",
                                 pattern=PROPOSAL_ID_RE)]
Profile = Annotated[str | None, Query(pattern=r"^(savings|balanced|reliability)$",
                                      description="savings | balanced | reliability (default: the setting)")]
TargetQ = Annotated[str | None, Query(max_length=300, description="one target (cgroup:/PATH, unit:NAME.service, "
                                                                   "pid:N or an imported name)")]
Note = Annotated[str | None, Query(max_length=500, description="why (kept in the history)")]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no proposal of that id"}}
_MOVE: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    409: {"description": "not allowed from the proposal's current state (the allowed ones listed)"},
    422: {"description": "a malformed id or note (the reason in the message)"},
}


def _engine(request: Request) -> Rightsizing:
    return Rightsizing(request.app.state.paths, request.app.state.settings)


def _who(request: Request) -> str:
    client = request.client
    return f"api:{client.host if client else 'unknown'}"


@router.get("/recommendations", responses={404: {"description": "no history for that target"}},
            summary="Recommendations for every observed target (a proposal recorded for each live target with "
                    "enough history)")
def recommendations(request: Request, _: ReadAccess, profile: Profile = None,
                    target: TargetQ = None) -> list[dict[str, Any]]:
    return [a.to_dict() for a in _engine(request).recommendations(profile=profile, target=target,
                                                                  who=_who(request))]


@router.get("/proposals/{proposal_id}", responses=_NOT_FOUND, summary="One proposal: values, plan, state, history")
def proposal(proposal_id: ProposalId, request: Request, _: ReadAccess) -> dict[str, Any]:
    return _engine(request).proposals.get(proposal_id).to_dict()


@router.post("/approve/{proposal_id}", responses=_MOVE, summary="proposed -> approved")
def approve(proposal_id: ProposalId, request: Request, _: WriteAccess, note: Note = None) -> dict[str, Any]:
    from experiments.rightsizing import workflow

    return workflow.approve(_engine(request).proposals, proposal_id, who=_who(request), note=note).to_dict()


@router.post("/reject/{proposal_id}", responses=_MOVE, summary="proposed | approved -> rejected")
def reject(proposal_id: ProposalId, request: Request, _: WriteAccess, note: Note = None) -> dict[str, Any]:
    from experiments.rightsizing import workflow

    return workflow.reject(_engine(request).proposals, proposal_id, who=_who(request), note=note).to_dict()


@router.post("/apply/{proposal_id}", responses={**_MOVE, 422: {"description": "the target is not allowed "
                                                                             "(allowed_targets), or a value is out "
                                                                             "of the knob's bounds"}},
             summary="approved -> applied (journaled), then validated in the background or rolled back")
def apply(proposal_id: ProposalId, request: Request, _: WriteAccess, note: Note = None,
          validate_s: Annotated[float | None, Query(ge=1, le=7 * 86400, description="validation period (default "
                                                                                     "rightsizing_validation_s)")
                                ] = None) -> dict[str, Any]:
    validations = request.app.state.validations
    return validations.apply(_engine(request), proposal_id, who=_who(request), note=note,
                             duration_s=validate_s).to_dict()


@router.post("/rollback/{proposal_id}", responses=_MOVE, summary="applied | validated -> rolled_back")
def rollback(proposal_id: ProposalId, request: Request, _: WriteAccess, note: Note = None) -> dict[str, Any]:
    from experiments.rightsizing import workflow

    eng = _engine(request)
    return workflow.rollback(eng.proposals, proposal_id, paths=eng.paths, who=_who(request), note=note).to_dict()


@router.get("/history", summary="Every step of every proposal: who moved it where, and when")
def history(request: Request, _: ReadAccess, target: TargetQ = None) -> list[dict[str, Any]]:
    return _engine(request).history(target=target)


@router.get("/targets", summary="Observed and imported targets, and what the service observes and validates now")
def targets(request: Request, _: ReadAccess) -> dict[str, Any]:
    observing = getattr(request.app.state, "observing", None)
    return {"targets": [t.__dict__ for t in _engine(request).targets()],
            "observing": observing.status() if observing is not None else None,
            "validations": request.app.state.validations.status()}


@cost_router.get("/recommendations", summary="Per target: cheapest fitting offers, the Pareto front of cost "
                                             "against performance risk, a purchase plan")
def cost_recommendations(request: Request, _: ReadAccess, profile: Profile = None) -> list[dict[str, Any]]:
    return _engine(request).cost_recommendations(profile=profile)


@cost_router.get("/predictions/{target:path}", responses={404: {"description": "no history for that target"}},
                 summary="A target's cost over the next days, with the forecast's backtested error")
def cost_prediction(target: str, request: Request, _: ReadAccess,
                    days: Annotated[float, Query(ge=1, le=365)] = 30.0) -> dict[str, Any]:
    return _engine(request).predict(target, horizon_days=days)


@cost_router.get("/savings", summary="What moving every target to its recommendation saves per month")
def cost_savings(request: Request, _: ReadAccess, profile: Profile = None) -> dict[str, Any]:
    return _engine(request).savings(profile=profile)
