"""``/bench``: the stored benchmark runs and their comparison (read-only). CLI twin: ``novatune bench``.

Runs are made by ``novatune bench run`` (it needs root and minutes of an otherwise quiet machine, so the API
does not start one)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request

from experiments.service.deps import ReadAccess

__all__ = ["router"]

router = APIRouter(prefix="/bench", tags=["bench"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no stored benchmark run of that id"}}
RunId = Annotated[str, Path(description="a benchmark run id (GET /bench/runs)", max_length=64)]


@router.get("/runs", summary="The stored benchmark runs, oldest first: id, time, suite, machine, kernel, medians")
def runs(request: Request, _: ReadAccess) -> list[dict[str, Any]]:
    from experiments.bench.store import list_runs

    return [{"id": r["id"], "time": r.get("time"), "suite": (r.get("suite") or {}).get("name"),
             "hostname": (r.get("machine") or {}).get("hostname"), "kernel": (r.get("kernel") or {}).get("release"),
             "cpu_quota": r.get("cpu_quota"),
             "medians": {n: b.get("median") for n, b in r["benchmarks"].items()}}
            for r in list_runs(request.app.state.paths)]


@router.get("/runs/{run_id}", responses=_NOT_FOUND,
            summary="One stored run: machine, kernel, knob snapshot, per benchmark the windows and median")
def run(run_id: RunId, request: Request, _: ReadAccess) -> dict[str, Any]:
    from experiments.bench.store import load_run

    return load_run(request.app.state.paths, run_id)


@router.get("/compare", responses=_NOT_FOUND,
            summary="Compare run `run` (default: the newest other run) with run `base`: per benchmark regression, "
                    "improvement or no change, the change of the median with its interval")
def compare(request: Request, _: ReadAccess,
            base: Annotated[str, Query(description="the base run id", max_length=64)],
            run: Annotated[str | None, Query(description="the run to check (default: the newest other run)",
                                             max_length=64)] = None) -> dict[str, Any]:
    from experiments.bench.compare import compare_runs

    return compare_runs(request.app.state.paths, base, run)
