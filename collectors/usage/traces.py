"""Usage traces from files: the CSV contract of ``novatune rightsize replay`` and the Bitbrains GWA-T-12 format.

**CSV contract** (:func:`read_trace`): a header and the columns ``vm_id``, ``timestamp`` (ISO 8601, or Unix
seconds), ``cpu_used_cores``, ``mem_used_gib``, optionally ``cpu_cores_capacity`` and ``mem_capacity_gib``
(other columns are ignored). Units may be normalised (capacity 1.0) when a trace has only percentages.
Rows of different VMs may interleave; within one ``vm_id`` the timestamps must strictly increase in file
order. Refused with a :class:`TraceError` (exit 2 / HTTP 422), nothing half-read returned:

* a file larger than ``max_bytes`` (the setting ``trace_max_bytes``), checked before reading;
* missing columns (the message names them and lists the required and optional ones);
* a duplicate or earlier timestamp within a VM (names the VM, both timestamps and their lines);
* negative usage, or a missing / NaN / non-numeric usage value (names the VM and the line(s));
  a missing capacity is allowed (unknown).

A VM with only a few samples is not an error: the recommender answers ``insufficient-data`` for it.
The file is read in chunks of :data:`CHUNK_ROWS` rows, only the contract's columns, as float32 (usage)
and float64 (times): memory holds about 35 bytes per row (twice that while the chunks are joined) whatever else
the file holds.

**Bitbrains** (:func:`read_bitbrains`): a directory of ``<vm>.csv`` files (searched recursively; files of
the same VM in several month folders are joined), ``;``+TAB separated, MHz and KiB converted to cores
and GiB with each row's own capacity. Tolerated as the data set's README asks: memory capacity 0 (unknown),
repeated timestamps (the first row kept), core-count changes (per-row capacity).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from collectors.errors import CollectorError
from optimizer.rightsizing.model import UsageSeries

__all__ = ["CHUNK_ROWS", "OPTIONAL", "REQUIRED", "TraceError", "read_bitbrains", "read_trace"]

REQUIRED = ("vm_id", "timestamp", "cpu_used_cores", "mem_used_gib")
OPTIONAL = ("cpu_cores_capacity", "mem_capacity_gib")
CHUNK_ROWS = 200_000
_USAGE = ("cpu_used_cores", "mem_used_gib")


class TraceError(CollectorError):
    """A usage trace that cannot be read as the contract says (exit 2, HTTP 422); the message says what and where."""

    exit_code = 2
    http_status = 422


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _check_size(path: Path, max_bytes: int) -> None:
    try:
        size = path.stat().st_size
    except OSError as e:
        raise TraceError(f"cannot read trace {path}: {e.strerror or e}") from None
    if not path.is_file():
        raise TraceError(f"trace {path} is not a regular file")
    if size > max_bytes:
        raise TraceError(f"trace {path} is {_size(size)} ({size} bytes), larger than the limit {_size(max_bytes)} "
                         f"({max_bytes} bytes, the setting trace_max_bytes); split the trace or raise trace_max_bytes")


def _header(path: Path) -> list[str]:
    try:
        cols = pd.read_csv(path, nrows=0).columns
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as e:
        raise TraceError(f"trace {path} is not a CSV file with a header line: {e}") from None
    names = [str(c).strip() for c in cols]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise TraceError(f"trace {path} lacks column(s) {', '.join(missing)}; required: {', '.join(REQUIRED)}; "
                         f"optional: {', '.join(OPTIONAL)} (found: {', '.join(names) or 'none'})")
    return names


def _timestamps(raw: pd.Series, path: Path, first_line: int) -> np.ndarray:
    """Unix seconds from Unix seconds or ISO 8601 text, row by row (naive times are UTC)."""
    if raw.isna().any():
        bad = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise TraceError(f"trace {path}: line {first_line + bad}: missing timestamp")
    num = pd.to_numeric(raw, errors="coerce")
    out = num.to_numpy(dtype=np.float64, copy=True)
    text = num.isna().to_numpy()
    if text.any():
        dt = pd.to_datetime(raw[text], utc=True, format="ISO8601", errors="coerce")
        if dt.isna().any():
            bad = int(np.flatnonzero(text)[np.flatnonzero(dt.isna().to_numpy())[0]])
            raise TraceError(f"trace {path}: line {first_line + bad}: timestamp {raw.iloc[bad]!r} is neither Unix "
                             "seconds nor ISO 8601 (e.g. 1375308176 or 2013-08-01T00:02:56Z)")
        out[text] = (dt - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy()
    return out


def _numbers(chunk: pd.DataFrame, col: str, path: Path, first_line: int) -> np.ndarray:
    v = pd.to_numeric(chunk[col], errors="coerce")
    bad = v.isna() & chunk[col].notna() & (chunk[col].astype(str).str.strip().str.lower() != "nan")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise TraceError(f"trace {path}: line {first_line + i}: {col} {chunk[col].iloc[i]!r} is not a number")
    return v.to_numpy(dtype=np.float64)


def _check_usage(vm: np.ndarray, values: np.ndarray, col: str, path: Path, first_line: int) -> None:
    nan = np.flatnonzero(~np.isfinite(values))
    if len(nan):
        lines = ", ".join(str(first_line + i) for i in nan[:5]) + (" ..." if len(nan) > 5 else "")
        raise TraceError(f"trace {path}: {col} is missing or NaN for vm {vm[nan[0]]} at line(s) {lines} "
                         f"({len(nan)} row(s) in this part); usage must be a number >= 0")
    neg = np.flatnonzero(values < 0)
    if len(neg):
        i = neg[0]
        raise TraceError(f"trace {path}: line {first_line + i}: {col} is {values[i]:g} for vm {vm[i]}; usage must "
                         "be >= 0")


def _read_chunks(path: Path, names: list[str]) -> pd.DataFrame:
    """The contract's columns of every row, checked chunk by chunk, with each row's line number."""
    wanted = [c for c in (*REQUIRED, *OPTIONAL) if c in names]
    parts: list[pd.DataFrame] = []
    line = 2
    reader = pd.read_csv(path, usecols=lambda c: str(c).strip() in wanted, dtype=str, chunksize=CHUNK_ROWS,
                         skipinitialspace=True, keep_default_na=False, na_values=[""])
    try:
        for raw in reader:
            chunk = raw.rename(columns=lambda c: str(c).strip()).reset_index(drop=True)
            if chunk["vm_id"].isna().any():
                i = int(np.flatnonzero(chunk["vm_id"].isna().to_numpy())[0])
                raise TraceError(f"trace {path}: line {line + i}: missing vm_id")
            vm = chunk["vm_id"].astype(str).str.strip().to_numpy()
            part = {"vm_id": pd.Categorical(vm), "t": _timestamps(chunk["timestamp"], path, line),
                    "line": np.arange(line, line + len(chunk), dtype=np.int64)}
            for col in _USAGE:
                v = _numbers(chunk, col, path, line)
                _check_usage(vm, v, col, path, line)
                part[col] = v.astype(np.float32)
            for col in OPTIONAL:
                if col in chunk:
                    part[col] = _numbers(chunk, col, path, line).astype(np.float32)
            parts.append(pd.DataFrame(part))
            line += len(chunk)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise TraceError(f"trace {path}: malformed CSV near line {line}: {e}") from None
    if not parts:
        return pd.DataFrame({c: [] for c in ("vm_id", "t", "line", *_USAGE)})
    return pd.concat(parts, ignore_index=True)


def _series(vm: str, g: pd.DataFrame, path: Path) -> UsageSeries:
    t = g["t"].to_numpy()
    steps = np.flatnonzero(np.diff(t) <= 0)
    if len(steps):
        i = int(steps[0])
        kind = "repeats" if t[i + 1] == t[i] else "goes back to"
        lines = g["line"].to_numpy()
        raise TraceError(f"trace {path}: vm {vm}: timestamp {kind} {t[i + 1]:.0f} at line {lines[i + 1]} "
                         f"(previous {t[i]:.0f} at line {lines[i]}); timestamps must strictly increase within each "
                         "vm_id (sort the trace by vm_id and time and drop duplicates)")
    cap = {c: g[c].to_numpy(dtype=np.float64) for c in OPTIONAL if c in g}
    for c in cap.values():
        c[c < 0] = np.nan
    return UsageSeries(target=vm, t=t, cpu_cores=g["cpu_used_cores"].to_numpy(dtype=np.float64),
                       mem_gib=g["mem_used_gib"].to_numpy(dtype=np.float64),
                       cpu_capacity=cap.get("cpu_cores_capacity"), mem_capacity=cap.get("mem_capacity_gib"))


def read_trace(path: str | os.PathLike[str], *, max_bytes: int) -> dict[str, UsageSeries]:
    """Every VM's series of the CSV trace at ``path``, by ``vm_id`` in order of first appearance.

    Raises:
        TraceError: the file is missing, larger than ``max_bytes``, not CSV, lacks columns, or holds a
            bad value or a timestamp out of order (see the module; the message names the VM and line).
    """
    p = Path(path)
    _check_size(p, max_bytes)
    names = _header(p)
    df = _read_chunks(p, names)
    out: dict[str, UsageSeries] = {}
    if df.empty:
        return out
    order = pd.unique(df["vm_id"].astype(str))
    for vm, g in df.groupby("vm_id", observed=True, sort=False):
        out[str(vm)] = _series(str(vm), g, p)
    return {vm: out[vm] for vm in order}


_BB = {"t": "Timestamp [ms]", "cores": "CPU cores", "cap_mhz": "CPU capacity provisioned [MHZ]",
       "use_mhz": "CPU usage [MHZ]", "mem_cap_kib": "Memory capacity provisioned [KB]", "mem_kib": "Memory usage [KB]"}


def _bitbrains_file(path: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, sep=";", skipinitialspace=True, dtype=np.float64)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, UnicodeDecodeError, OSError) as e:
        raise TraceError(f"Bitbrains file {path}: cannot read it: {e}") from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in _BB.values() if c not in df.columns]
    if missing:
        raise TraceError(f"Bitbrains file {path} lacks column(s) {', '.join(missing)}; expected the GWA-T-12 "
                         f"columns {', '.join(_BB.values())}")
    return df[list(_BB.values())].rename(columns={v: k for k, v in _BB.items()})


def _bitbrains_series(vm: str, df: pd.DataFrame) -> UsageSeries:
    df = df.sort_values("t", kind="stable").drop_duplicates("t", keep="first")
    df = df[np.isfinite(df["t"]) & np.isfinite(df["use_mhz"]) & np.isfinite(df["mem_kib"])]
    cores = df["cores"].to_numpy()
    cap_mhz = df["cap_mhz"].to_numpy()
    per_core = np.where((cores > 0) & (cap_mhz > 0), cap_mhz / np.where(cores > 0, cores, 1), np.nan)
    typical = float(np.nanmedian(per_core)) if np.isfinite(per_core).any() else 2600.0
    per_core = np.where(np.isfinite(per_core), per_core, typical)
    mem_cap = df["mem_cap_kib"].to_numpy() / 2**20
    return UsageSeries(
        target=vm, t=df["t"].to_numpy(), cpu_cores=np.clip(df["use_mhz"].to_numpy() / per_core, 0, None),
        mem_gib=np.clip(df["mem_kib"].to_numpy() / 2**20, 0, None),
        cpu_capacity=np.where(cores > 0, cores, np.nan).astype(np.float64),
        mem_capacity=np.where(mem_cap > 0, mem_cap, np.nan),
    )


def read_bitbrains(directory: str | os.PathLike[str], *, max_bytes: int | None = None) -> dict[str, UsageSeries]:
    """Every VM of a Bitbrains GWA-T-12 directory (``<vm>.csv`` files, searched recursively), by VM number.

    Files of one VM in several folders (months) are joined in time order. ``max_bytes`` bounds each file.

    Raises:
        TraceError: not a directory, no ``.csv`` file in it, a file too large or not in the format.
    """
    d = Path(directory)
    if not d.is_dir():
        raise TraceError(f"{d} is not a directory of Bitbrains files (<vm>.csv)")
    files = sorted(d.rglob("*.csv"))
    if not files:
        raise TraceError(f"{d} holds no .csv file; a Bitbrains directory holds <vm>.csv files (e.g. 2013-8/118.csv)")
    frames: dict[str, list[pd.DataFrame]] = {}
    for f in files:
        if max_bytes is not None:
            _check_size(f, max_bytes)
        frames.setdefault(f.stem, []).append(_bitbrains_file(f))
    def key(vm: str) -> tuple[float, str]:
        return (float(vm), vm) if vm.isdigit() else (math.inf, vm)
    return {vm: _bitbrains_series(vm, pd.concat(frames[vm], ignore_index=True)) for vm in sorted(frames, key=key)}
