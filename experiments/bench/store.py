"""Where benchmark runs are kept: one JSON document per run, ``<data dir>/bench/<id>.json``.

Written through :mod:`experiments.safefs` (the directory private, the file written to a private temporary
file and renamed: readers see a whole run or none) and read back with :func:`experiments.safefs.read_trusted`.
An id is ``bench-YYYYMMDD-HHMMSS-xxxx`` (UTC, sortable by time); anything else is refused before a path is
built from it.
"""

from __future__ import annotations

import json
import math
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collectors.errors import NovatuneError
from experiments.safefs import UnsafeLocation, private_dir, read_trusted, write_file
from experiments.settings import Paths

__all__ = ["BenchNotFound", "BenchStoreError", "bench_dir", "check_id", "json_safe", "latest", "list_runs", "load_run",
           "new_run_id", "newest_id", "save_run"]

_ID = re.compile(r"^bench-[0-9]{8}-[0-9]{6}-[0-9a-f]{4}$")


class BenchNotFound(NovatuneError, LookupError):
    """No stored benchmark run with that id (exit 2, HTTP 404); the message names the known ones."""

    exit_code = 2
    http_status = 404


class BenchStoreError(NovatuneError):
    """A stored benchmark run cannot be read (corrupt, unsafe) or written (exit 2, HTTP 409)."""

    exit_code = 2
    http_status = 409


def bench_dir(paths: Paths) -> Path:
    """``<data dir>/bench`` (not created)."""
    return paths.home / "bench"


def new_run_id() -> str:
    """A fresh run id: ``bench-YYYYMMDD-HHMMSS-xxxx`` (UTC now, 4 random hex digits)."""
    return f"bench-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _known(paths: Paths) -> list[str]:
    d = bench_dir(paths)
    if not d.is_dir():
        return []
    return sorted(p.stem for p in d.glob("bench-*.json") if _ID.match(p.stem))


def check_id(paths: Paths, run_id: object) -> str:
    """``run_id`` if it names a stored run.

    Raises:
        BenchNotFound: not an id of the form ``bench-YYYYMMDD-HHMMSS-xxxx``, or no such run (the message
            lists the newest known ids, or says there are none).
    """
    known = _known(paths)
    if isinstance(run_id, str) and _ID.match(run_id) and run_id in known:
        return run_id
    shown = repr(run_id)[:80]
    if not known:
        raise BenchNotFound(f"no benchmark run {shown}: none is stored yet (run `novatune bench run`)")
    tail = ", ".join(known[-5:])
    raise BenchNotFound(f"no benchmark run {shown}; known ids (newest last, see `novatune bench list`): {tail}")


def json_safe(obj: Any) -> Any:
    """``obj`` with every NaN/inf float replaced by None (strict JSON), recursively."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def save_run(paths: Paths, run: dict[str, Any]) -> Path:
    """Write ``run`` (a dict with a valid ``id``) as ``<data dir>/bench/<id>.json``, atomically; returns the path.

    Raises:
        ValueError: ``run["id"]`` is not a run id.
        BenchStoreError: the directory is unsafe or cannot be written.
    """
    rid = run.get("id")
    if not isinstance(rid, str) or not _ID.match(rid):
        raise ValueError(f"not a benchmark run id: {rid!r}")
    try:
        d = private_dir(bench_dir(paths.ensure()), what="the benchmark runs directory", create=True)
        data = json.dumps(json_safe(run), indent=1, sort_keys=True, allow_nan=False).encode()
        return write_file(d / f"{rid}.json", data, mode=0o600)
    except (UnsafeLocation, OSError) as err:
        raise BenchStoreError(f"cannot store benchmark run {rid}: {err}") from err


def load_run(paths: Paths, run_id: object) -> dict[str, Any]:
    """The stored run ``run_id``.

    Raises:
        BenchNotFound: no such run (see :func:`check_id`).
        BenchStoreError: the file is unsafe (another user's, a link, writable by others) or not a run.
    """
    rid = check_id(paths, run_id)
    path = bench_dir(paths) / f"{rid}.json"
    try:
        raw = read_trusted(path, what="a benchmark run")
    except (UnsafeLocation, OSError) as err:
        raise BenchStoreError(f"cannot read benchmark run {rid}: {err}") from err
    if raw is None:
        raise BenchNotFound(f"no benchmark run {rid!r} (removed meanwhile)")
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise BenchStoreError(f"benchmark run {rid} ({path}) is not JSON: {err}") from None
    if not isinstance(doc, dict) or doc.get("id") != rid or not isinstance(doc.get("benchmarks"), dict):
        raise BenchStoreError(f"benchmark run {rid} ({path}) is not a benchmark run document")
    return doc


def list_runs(paths: Paths) -> list[dict[str, Any]]:
    """Every stored run, oldest first (unreadable ones skipped)."""
    out = []
    for rid in _known(paths):
        try:
            out.append(load_run(paths, rid))
        except NovatuneError:
            continue
    return sorted(out, key=lambda r: (str(r.get("time", "")), r["id"]))


def newest_id(paths: Paths, *, other_than: str | None = None) -> str:
    """The id of the newest stored run (by its time), leaving out ``other_than``.

    Raises:
        BenchNotFound: there is no such run.
    """
    ids = [r["id"] for r in list_runs(paths) if r["id"] != other_than]
    if not ids:
        extra = f" other than {other_than}" if other_than else ""
        raise BenchNotFound(f"no benchmark run{extra} is stored: run `novatune bench run` first")
    return str(ids[-1])


def latest(paths: Paths) -> dict[str, Any] | None:
    """The newest readable stored run (ids sort by their UTC time), None when there is none. Never raises on a
    bad file: it is skipped."""
    for rid in reversed(_known(paths)):
        try:
            return load_run(paths, rid)
        except NovatuneError:
            continue
    return None
