"""``/profiling``: background profiling sessions of Python processes (allowed targets only), the stored
profiles, their flamegraphs in every format, diffs and hotspots (CLI twins: ``novatune profile
record|watch|list|show|hotspots``, ``novatune flamegraph diff``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from experiments.profiling.sessions import ProfilingSessions
from experiments.service.deps import ReadAccess, WriteAccess

__all__ = ["SessionRequest", "router"]

router = APIRouter(prefix="/profiling", tags=["profiling"])

_ID = r"^[0-9a-f]{20}$"
ProfileId = Annotated[str, Path(description="a stored profile's id (GET /profiling/profiles)", pattern=_ID)]
SessionId = Annotated[str, Path(description="a session's id (GET /profiling/status)", pattern=r"^[0-9a-f]{12}$")]
ProfileFormat = Literal["svg", "html", "json", "speedscope", "pprof", "collapsed"]
DiffFormat = Literal["svg", "html", "json"]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no stored profile of that id"}}


async def _sessions(request: Request) -> ProfilingSessions:
    sessions: ProfilingSessions = request.app.state.profiling
    return sessions


Sessions = Annotated[ProfilingSessions, Depends(_sessions)]


class SessionRequest(BaseModel):
    """A background profiling session of a running Python process."""

    model_config = ConfigDict(extra="forbid")
    pid: int = Field(ge=1, le=4_194_304, description="the process (an allowed target: allowed_targets)")
    duration_s: float = Field(default=60.0, ge=1, le=86_400, description="how long; windows of "
                                                                          "profiling_window_s are stored as they end")
    rate_hz: int = Field(default=100, ge=5, le=100, description="starting samples per second, adapted to the "
                                                                "overhead budget (profiling_budget_pct)")
    mode: Literal["cpu", "wall"] = Field(default="cpu", description="cpu: running code; wall: idle threads too")
    native: bool = Field(default=False, description="C/C++ frames of native extensions too")


@router.get("/status", summary="Profiling sessions (running and recent), their current rate, the budget, the store")
def profiling_status(sessions: Sessions, _: ReadAccess) -> dict[str, Any]:
    return sessions.status()


@router.get("/overhead", summary="Measured overhead per session and window: rate, py-spy CPU, estimated slowdown")
def profiling_overhead(sessions: Sessions, _: ReadAccess) -> list[dict[str, Any]]:
    return sessions.overhead()


@router.post("/sessions", status_code=201,
             responses={403: {"description": "the pid is not an allowed target (or is never one)"},
                        404: {"description": "no process has that pid"},
                        409: {"description": "too many sessions running, or the pid is profiled already"},
                        422: {"description": "a bound, or the process does not run Python"}},
             summary="Start profiling a running Python process in the background")
def start_session(body: SessionRequest, sessions: Sessions, _: WriteAccess) -> dict[str, Any]:
    return sessions.start(pid=body.pid, duration_s=body.duration_s, rate_hz=body.rate_hz, mode=body.mode,
                          native=body.native).to_dict()


@router.get("/sessions/{session_id}", responses={404: {"description": "no session of that id"}},
            summary="One session: state, rate, windows and the profiles stored")
def get_session(session_id: SessionId, sessions: Sessions, _: ReadAccess) -> dict[str, Any]:
    return sessions.get(session_id).to_dict()


@router.delete("/sessions/{session_id}", responses={404: {"description": "no session of that id"}},
               summary="Stop a session (py-spy stopped, the window so far stored)")
def stop_session(session_id: SessionId, sessions: Sessions, _: WriteAccess) -> dict[str, Any]:
    return sessions.stop(session_id).to_dict()


@router.get("/profiles", summary="Stored profiles, newest first, filtered by labels")
def list_profiles(
    sessions: Sessions, _: ReadAccess,
    label: Annotated[list[str] | None, Query(description="KEY=VALUE, repeat for several (all must hold)",
                                             max_length=20)] = None,
    study: Annotated[str | None, Query(max_length=64)] = None,
    trial: Annotated[int | None, Query(ge=0)] = None,
    pid: Annotated[int | None, Query(ge=1)] = None,
    mode: Annotated[Literal["cpu", "wall"] | None, Query()] = None,
    kind: Annotated[Literal["window", "hourly"] | None, Query()] = None,
    since: Annotated[float | None, Query(description="epoch seconds")] = None,
    until: Annotated[float | None, Query(description="epoch seconds")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[dict[str, Any]]:
    labels: dict[str, str] = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:  # a 422 of the shape the schema declares for a bad query (loc, msg, type)
            raise RequestValidationError([{"type": "value_error", "loc": ("query", "label"), "input": item,
                                           "msg": f"label {item!r}: give KEY=VALUE"}])
        labels[key] = value
    for key, val in (("study", study), ("trial", trial), ("pid", pid), ("mode", mode)):
        if val is not None:
            labels[key] = str(val)
    rows = sessions.store.list(labels or None, since=since, until=until, kind=kind, limit=limit)
    return [r.to_dict() for r in rows]


@router.get("/flamegraph/{profile_id}", responses=_NOT_FOUND,
            summary="A stored profile as a flamegraph (svg, html) or in a profile format")
def flamegraph(profile_id: ProfileId, sessions: Sessions, _: ReadAccess,
               format: Annotated[ProfileFormat, Query(description="output format")] = "svg") -> Response:
    from experiments.profiling.outputs import MEDIA_TYPES, render

    data = render(sessions.store.get(profile_id), format, title=f"profile {profile_id}", header=True)
    return Response(data, media_type=MEDIA_TYPES[format], headers=_disposition(profile_id, format))


@router.get("/diff", responses={404: {"description": "no stored profile of one of the ids"}},
            summary="Differential flamegraph of target against base (by share of samples)")
def profile_diff(sessions: Sessions, _: ReadAccess,
                 base: Annotated[str, Query(pattern=_ID, description="the base profile's id")],
                 target: Annotated[str, Query(pattern=_ID, description="the target profile's id")],
                 format: Annotated[DiffFormat, Query()] = "svg",
                 noise_pct: Annotated[float, Query(ge=0, le=50, description="changes below this many "
                                                                            "percentage points are neutral")] = 0.5,
                 ) -> Response:
    from experiments.profiling.outputs import MEDIA_TYPES, render_diff

    b, t = sessions.store.get(base), sessions.store.get(target)
    data = render_diff(b, t, format, title=f"{target} against {base}", noise_pct=noise_pct)
    return Response(data, media_type=MEDIA_TYPES[format], headers=_disposition(f"diff-{base}-{target}", format))


@router.get("/hotspots/{profile_id}", responses=_NOT_FOUND,
            summary="Functions (or lines) by self and total share, most expensive first, and off-CPU hints")
def profile_hotspots(profile_id: ProfileId, sessions: Sessions, _: ReadAccess,
                     threshold_pct: Annotated[float, Query(ge=0, le=100)] = 5.0,
                     by: Annotated[Literal["function", "line"], Query()] = "function") -> dict[str, Any]:
    from collectors.profiler.hotspots import hotspots
    from collectors.profiler.offcpu import bottleneck_hints

    prof = sessions.store.get(profile_id)
    return {"id": profile_id, "samples": prof.total, "mode": prof.meta.mode,
            "hotspots": [h.to_dict() for h in hotspots(prof, threshold_pct=threshold_pct, by=by)],
            "hints": bottleneck_hints(prof)}


#: a flamegraph page runs only its own inline script and loads nothing (its labels come from target processes)
_PAGE_CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
             "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


def _disposition(name: str, fmt: str) -> dict[str, str]:
    ext = {"speedscope": "speedscope.json", "pprof": "pb.gz", "collapsed": "txt"}.get(fmt, fmt)
    how = "inline" if fmt in ("svg", "html", "json") else "attachment"
    headers = {"Content-Disposition": f'{how}; filename="{name}.{ext}"', "X-Content-Type-Options": "nosniff"}
    if fmt in ("svg", "html"):
        headers["Content-Security-Policy"] = _PAGE_CSP
    return headers
