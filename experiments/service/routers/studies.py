"""``/studies``: launch, watch, stop, delete and export studies (CLI twin: ``novatune study ...``).

Listing and one study's summary come from :class:`~experiments.service.views.StudyIndex`
(cheap while studies run); trials, front and exports read the Optuna store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse

from experiments.deploy import export
from experiments.service.deps import DataDir, Index, Manager, ReadAccess, WriteAccess
from experiments.service.views import StudyIndex, StudySummary
from experiments.settings import Paths
from experiments.spec import NAME_RE, StudySpec
from experiments.study.results import StudyNotFound, StudyView, load_view

__all__ = ["router"]

router = APIRouter(prefix="/studies", tags=["studies"])

StudyId = Annotated[str, Path(description="the study's name", pattern=NAME_RE, max_length=64)]
if TYPE_CHECKING:  # the checker sees a str; FastAPI (and the schema) the formats, spelled once in export
    ExportFormat = str
else:
    ExportFormat = Literal[export.FORMATS]

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no study of that name"}}
_MEDIA = {"json": "application/json", "yaml": "application/yaml", "shell": "text/x-shellscript"}


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, media_type="application/json", status_code=status)


def _summary(index: StudyIndex, name: str, *, changed: bool = False) -> bytes:
    """The study's summary as JSON. Raises: StudyNotFound: no such study."""
    if changed:
        index.invalidate()
    body = index.summary(name)
    if body is None:
        raise StudyNotFound(f"no study named {name!r}; GET /studies lists them")
    return body


def _view(paths: Paths, index: StudyIndex, name: str) -> StudyView:
    """The study's trials as stored. Raises: StudyNotFound: no such study, or none of its trials yet."""
    if not paths.has_studies:
        raise StudyNotFound(f"no study named {name!r} has trials yet")
    try:
        return load_view(paths.optuna_url, name)
    except StudyNotFound:
        if index.summary(name) is not None:  # registered, its worker has not created it yet
            raise StudyNotFound(f"study {name!r} has no trials yet (state: starting)") from None
        raise


@router.post(
    "",
    status_code=201,
    response_model=StudySummary,
    summary="Launch a study in the background",
    responses={409: {"description": "another running study tunes some of the same knobs, or the limit of "
                                    "running studies is reached"},
               422: {"description": "invalid spec: every problem is listed"}},
)
def create_study(
    spec: StudySpec,
    manager: Manager,
    index: Index,
    _: WriteAccess,
    name: Annotated[str | None, Query(pattern=NAME_RE, max_length=64,
                                      description="study name (default: the spec's)")] = None,
    trials: Annotated[int | None, Query(ge=1, le=10_000, description="override budget.trials")] = None,
) -> Response:
    rec = manager.submit(spec, name=name, trials=trials, source="POST /studies")
    return _json(_summary(index, rec.name, changed=True), 201)


@router.get("", response_model=list[StudySummary], summary="Every study")
async def list_studies(index: Index, _: ReadAccess) -> Response:
    return _json(index.listing())


@router.get("/{study_id}", response_model=StudySummary, responses=_NOT_FOUND,
            summary="State, trials done, best so far, convergence")
async def get_study(study_id: StudyId, index: Index, _: ReadAccess) -> Response:
    return _json(_summary(index, study_id))


@router.post("/{study_id}/stop", response_model=StudySummary,
             responses={**_NOT_FOUND, 409: {"description": "the study is not running"}},
             summary="Stop a running study: its knobs are restored, then its state is `stopped`")
def stop_study(study_id: StudyId, manager: Manager, index: Index, _: WriteAccess) -> Response:
    manager.stop(study_id)
    return _json(_summary(index, study_id, changed=True))


@router.delete("/{study_id}", responses=_NOT_FOUND,
               summary="Delete a study (stopped first if it runs); its MLflow experiment is kept")
def delete_study(study_id: StudyId, manager: Manager, index: Index, _: WriteAccess) -> dict[str, Any]:
    try:
        return manager.delete(study_id)
    finally:
        index.invalidate()


@router.get("/{study_id}/trials", responses=_NOT_FOUND,
            summary="Every trial: state, objective values, knobs, metrics, flags")
def study_trials(study_id: StudyId, paths: DataDir, index: Index, _: ReadAccess) -> list[dict[str, Any]]:
    return _view(paths, index, study_id).trial_rows()


@router.get("/{study_id}/pareto", responses=_NOT_FOUND,
            summary="The Pareto front of feasible trials and the chosen configuration")
def study_pareto(study_id: StudyId, paths: DataDir, index: Index, _: ReadAccess) -> dict[str, Any]:
    return _view(paths, index, study_id).pareto_report()


@router.get(
    "/{study_id}/export",
    response_class=Response,
    responses={**_NOT_FOUND, 409: {"description": "no feasible trial to export (yet), or the trial is not exportable"},
               200: {"content": {"text/plain": {}, "application/json": {}, "application/yaml": {}},
                     "description": "the configuration in the requested format"}},
    summary="The chosen configuration (the knee by default) as json, yaml, sysctl, tuned, systemd or shell",
)
def study_export(
    study_id: StudyId,
    paths: DataDir,
    index: Index,
    _: ReadAccess,
    format: Annotated[ExportFormat, Query(description="output format")] = "json",
    trial: Annotated[int | None, Query(ge=0, le=1_000_000,
                                       description="trial number (default: the chosen one)")] = None,
    include: Annotated[str | None, Query(max_length=64, description="tuned: a stock profile to include")] = None,
) -> Response:
    view = _view(paths, index, study_id)
    if trial is not None:
        try:
            view.trial(trial)
        except LookupError as err:
            return JSONResponse({"detail": str(err), "error": "TrialNotFound"}, status_code=404)
    text = export.render(view, format, trial=trial, include=include)
    headers = {"Content-Disposition": f'inline; filename="{export.FILENAMES[format]}"'}
    return Response(content=text, media_type=_MEDIA.get(format, "text/plain"), headers=headers)
