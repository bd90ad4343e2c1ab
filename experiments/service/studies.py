"""``/studies``: launch, watch, stop, delete and export studies.

Listing and one study's summary come from :class:`~experiments.service.views.StudyIndex`
(cheap while studies run); trials, front and exports read the Optuna store.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from experiments import export
from experiments.service.auth import read_access, write_access
from experiments.service.views import StudySummary
from experiments.spec import NAME_RE, StudySpec
from experiments.store import StudyNotFound, load_view

__all__ = ["router"]

router = APIRouter(prefix="/studies", tags=["studies"])

StudyId = Annotated[str, Path(description="the study's name", pattern=NAME_RE, max_length=64)]
ExportFormat = Literal[export.FORMATS]  # type: ignore[valid-type]

_NOT_FOUND = {404: {"description": "no study of that name"}}
_MEDIA = {"json": "application/json", "yaml": "application/yaml", "shell": "text/x-shellscript"}


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, media_type="application/json", status_code=status)


def _summary(request: Request, name: str, *, changed: bool = False) -> bytes:
    if changed:
        request.app.state.index.invalidate()
    body = request.app.state.index.summary(name)
    if body is None:
        raise StudyNotFound(f"no study named {name!r}; GET /studies lists them")
    return body


def _view(request: Request, name: str):
    paths = request.app.state.paths
    if not paths.optuna_db.exists():
        raise StudyNotFound(f"no study named {name!r} has trials yet")
    try:
        return load_view(paths.optuna_url, name)
    except StudyNotFound:
        if request.app.state.index.summary(name) is not None:  # registered, its worker has not created it yet
            raise StudyNotFound(f"study {name!r} has no trials yet (state: starting)") from None
        raise


@router.post(
    "",
    status_code=201,
    response_model=StudySummary,
    dependencies=[Depends(write_access)],
    summary="Launch a study in the background",
    responses={409: {"description": "another running study tunes some of the same knobs, or the limit of "
                                    "running studies is reached"},
               422: {"description": "invalid spec: every problem is listed"}},
)
def create_study(
    request: Request,
    spec: StudySpec,
    name: Annotated[str | None, Query(pattern=NAME_RE, max_length=64, description="study name (default: the spec's)")] = None,
    trials: Annotated[int | None, Query(ge=1, le=10_000, description="override budget.trials")] = None,
) -> Response:
    rec = request.app.state.manager.submit(spec, name=name, trials=trials, source="POST /studies")
    return _json(_summary(request, rec.name, changed=True), 201)


@router.get("", response_model=list[StudySummary], dependencies=[Depends(read_access)], summary="Every study")
async def list_studies(request: Request) -> Response:
    return _json(request.app.state.index.listing())


@router.get("/{study_id}", response_model=StudySummary, dependencies=[Depends(read_access)], responses=_NOT_FOUND,
            summary="State, trials done, best so far, convergence")
async def get_study(request: Request, study_id: StudyId) -> Response:
    return _json(_summary(request, study_id))


@router.post("/{study_id}/stop", response_model=StudySummary, dependencies=[Depends(write_access)],
             responses={**_NOT_FOUND, 409: {"description": "the study is not running"}},
             summary="Stop a running study: its knobs are restored, then its state is `stopped`")
def stop_study(request: Request, study_id: StudyId) -> Response:
    request.app.state.manager.stop(study_id)
    return _json(_summary(request, study_id, changed=True))


@router.delete("/{study_id}", dependencies=[Depends(write_access)], responses=_NOT_FOUND,
               summary="Delete a study (stopped first if it runs); its MLflow experiment is kept")
def delete_study(request: Request, study_id: StudyId) -> dict[str, Any]:
    try:
        return request.app.state.manager.delete(study_id)
    finally:
        request.app.state.index.invalidate()


@router.get("/{study_id}/trials", dependencies=[Depends(read_access)], responses=_NOT_FOUND,
            summary="Every trial: state, objective values, knobs, metrics, flags")
def study_trials(request: Request, study_id: StudyId) -> list[dict[str, Any]]:
    return _view(request, study_id).trial_rows()


@router.get("/{study_id}/pareto", dependencies=[Depends(read_access)], responses=_NOT_FOUND,
            summary="The Pareto front of feasible trials and the chosen configuration")
def study_pareto(request: Request, study_id: StudyId) -> dict[str, Any]:
    return _view(request, study_id).pareto_report()


@router.get(
    "/{study_id}/export",
    dependencies=[Depends(read_access)],
    response_class=Response,
    responses={**_NOT_FOUND, 409: {"description": "no feasible trial to export (yet), or the trial is not exportable"},
               200: {"content": {"text/plain": {}, "application/json": {}, "application/yaml": {}},
                     "description": "the configuration in the requested format"}},
    summary="The chosen configuration (the knee by default) as json, yaml, sysctl, tuned, systemd or shell",
)
def study_export(
    request: Request,
    study_id: StudyId,
    format: Annotated[ExportFormat, Query(description="output format")] = "json",
    trial: Annotated[int | None, Query(ge=0, le=1_000_000, description="trial number (default: the chosen one)")] = None,
    include: Annotated[str | None, Query(max_length=64, description="tuned: a stock profile to include")] = None,
) -> Response:
    view = _view(request, study_id)
    if trial is not None:
        try:
            view.trial(trial)
        except LookupError as err:
            return JSONResponse({"detail": str(err), "error": "TrialNotFound"}, status_code=404)
    text = export.render(view, format, trial=trial, include=include)
    headers = {"Content-Disposition": f'inline; filename="{export.FILENAMES[format]}"'}
    return Response(content=text, media_type=_MEDIA.get(format, "text/plain"), headers=headers)
