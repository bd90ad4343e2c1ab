"""``/tuning/continuous``: start, list, stop and read the history of continuous tuners (the CLI twin:
``novatune autotune run|status|history``). Registered on the ``/tuning`` router.

The spec comes inline in the body (never a server-side path from a client); a bad spec or bad options
answer 422, a tuner already tuning one of the knobs 409, an unknown id 404.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from experiments.deploy.applications import APPLICATION_ID_RE
from experiments.service.deps import DataDir, ReadAccess, WriteAccess

__all__ = ["ContinuousOptions", "ContinuousRequest", "register"]

_TUNER_ID = Annotated[str, Path(description="a continuous tuner id (see /tuning/status)",
                                pattern=APPLICATION_ID_RE)]


class ContinuousOptions(BaseModel):
    """How the tuner runs (see docs/autotune.md); every field optional."""

    model_config = ConfigDict(extra="forbid")
    duration_s: float | None = Field(default=None, description="stop after this many seconds (default: never)")
    cycles: int | None = Field(default=None, description="stop after this many cycles (default: never)")
    interval_s: float = Field(default=300.0, description="from one cycle's start to the next")
    converged_interval_s: float | None = Field(default=None, description="the same once converged (3 × interval)")
    study_trials: int = Field(default=8, description="trials of each small study")
    window_s: float | None = Field(default=None, description="one measurement window (the spec's trial.measure_s)")
    windows: int = Field(default=5, description="windows per check of the current configuration")
    validation_s: float = Field(default=600.0, description="the validated apply's window")
    converge_after: int = Field(default=3, description="quiet cycles before converged")
    keep_limit: float = Field(default=0.0, description="a step is kept only when the primary objective's change is "
                                                       "shown above this (0: a shown gain)")
    drop_limit: float = Field(default=-0.10, description="performance fall since a kept step that rolls it back")
    drift_limit: float = Field(default=0.20, description="relative change of load/CPU/performance that is drift")


class ContinuousRequest(BaseModel):
    """The spec to keep tuned (inline, as JSON) and the options."""

    model_config = ConfigDict(extra="forbid")
    spec: dict[str, Any] = Field(description="a study spec, inline (the same fields as a spec file)")
    options: ContinuousOptions = Field(default_factory=ContinuousOptions)


def register(router: APIRouter) -> None:
    """Add the continuous-tuning routes to the ``/tuning`` router."""

    @router.post("/continuous", status_code=202,
                 responses={409: {"description": "a continuous tuner already tunes one of the spec's knobs"},
                            422: {"description": "a bad spec (every problem listed) or bad options"}},
                 summary="Start a continuous tuner on an inline spec (202 with its id)")
    def start_continuous(body: ContinuousRequest, request: Request, _: WriteAccess) -> JSONResponse:
        from experiments.autotune.model import AutotuneOptions
        from experiments.spec import parse_spec

        spec = parse_spec(body.spec, source="POST /tuning/continuous")
        opts = AutotuneOptions(**body.options.model_dump()).check()
        tuner_id = request.app.state.continuous.start(spec, opts)
        return JSONResponse({"id": tuner_id, "state": "starting",
                             "status": f"/tuning/continuous/{tuner_id}",
                             "history": f"/tuning/continuous/{tuner_id}/history"}, status_code=202)

    @router.get("/continuous", summary="Every continuous tuner: state, cycle, convergence, current configuration")
    def list_continuous(paths: DataDir, _: ReadAccess) -> list[dict[str, Any]]:
        from experiments.autotune.service import summaries

        return summaries(paths)

    @router.get("/continuous/{tuner_id}", responses={404: {"description": "no tuner of that id"}},
                summary="One continuous tuner's state")
    def get_continuous(tuner_id: _TUNER_ID, paths: DataDir, _: ReadAccess) -> dict[str, Any]:
        from experiments.autotune.service import history

        h = history(paths, tuner_id)
        return {k: v for k, v in h.items() if k not in ("cycles", "steps")}

    @router.get("/continuous/{tuner_id}/history", responses={404: {"description": "no tuner of that id"}},
                summary="A continuous tuner's cycles and steps (measurements, drift, decisions, snapshots)")
    def continuous_history(tuner_id: _TUNER_ID, paths: DataDir, _: ReadAccess) -> dict[str, Any]:
        from experiments.autotune.service import history

        return history(paths, tuner_id)

    @router.delete("/continuous/{tuner_id}",
                   responses={404: {"description": "no tuner of that id"},
                              409: {"description": "the tuner runs in another process"}},
                   summary="Stop a continuous tuner (a validation in progress restores; kept steps stay)")
    def stop_continuous(tuner_id: _TUNER_ID, request: Request, _: WriteAccess) -> dict[str, Any]:
        result: dict[str, Any] = request.app.state.continuous.stop(tuner_id)
        return result
