"""The usage history: one SQLite file of samples per target, downsampled with age, pruned past retention.

Resolution schedule (:meth:`UsageStore.downsample`): raw samples are kept for :data:`RAW_DAYS` (2) days; older
ones become 5-minute buckets, kept up to :data:`FIVE_MIN_DAYS` (14) days; older ones become 1-hour buckets,
kept until :meth:`UsageStore.prune` drops everything past ``retention_days``. A bucket holds, per column, the
mean (weighted by the raw samples it stands for) and the maximum, so peaks survive: :meth:`UsageStore.series`
gives memory from the bucket maxima (right-sizing must never cut below a peak working set) and CPU from the means;
capacity is the bucket's maximum. Only complete buckets are made (the cut-off is aligned to the bucket size), and a
late sample for a bucket that exists is merged into it. OOM kills are events (time, count), never downsampled.

The file follows :mod:`collectors.sqlitefile` (created 0600 with ``O_EXCL | O_NOFOLLOW``; it and its WAL files
must be regular files of the running user with one link, else :class:`UsageStoreError`, checked before every
connection; a fresh connection per call, in WAL mode; writes in ``BEGIN IMMEDIATE`` transactions: one writer at
a time, readers never blocked). A long-running writer (the observer) holds one connection for its thread with
:meth:`UsageStore.held` (closing the last connection checkpoints the WAL: too costly every interval) and writes
every target of an interval in one transaction (:meth:`UsageStore.add_batch`).
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from collectors.sqlitefile import SqliteFile
from collectors.usage.errors import UnknownTarget, UsageError, UsageStoreError
from collectors.usage.sampler import UsageSample
from optimizer.rightsizing.model import UsageSeries

__all__ = ["FIVE_MIN_DAYS", "MEASURES", "RAW_DAYS", "SCHEMA_VERSION", "TargetInfo", "UsageStore"]

SCHEMA_VERSION = 1
RAW_DAYS = 2.0
FIVE_MIN_DAYS = 14.0
DAY = 86400.0
#: columns kept as mean and maximum: stored name -> UsageSample field
MEASURES = {"cpu": "cpu_cores", "mem": "mem_gib", "mem_usage": "mem_usage_gib", "thr": "throttled_ratio",
            "psi_cpu": "psi_cpu", "psi_mem": "psi_memory", "psi_io": "psi_io"}
#: capacity columns, kept as the bucket's maximum
CAPACITY = {"cpu_cap": "cpu_capacity", "mem_cap": "mem_capacity"}
_COLS = [*MEASURES, *(f"{c}_max" for c in MEASURES), *CAPACITY]
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS targets (name TEXT PRIMARY KEY, source TEXT NOT NULL, psi_source TEXT NOT NULL,
        created_s REAL NOT NULL)""",
    f"""CREATE TABLE IF NOT EXISTS samples (target TEXT NOT NULL REFERENCES targets (name) ON DELETE CASCADE,
        res INTEGER NOT NULL, t REAL NOT NULL, n INTEGER NOT NULL, {", ".join(f"{c} REAL" for c in _COLS)},
        PRIMARY KEY (target, res, t)) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS samples_t ON samples (res, t)",
    """CREATE TABLE IF NOT EXISTS events (target TEXT NOT NULL REFERENCES targets (name) ON DELETE CASCADE,
        t REAL NOT NULL, kind TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (target, t, kind)) WITHOUT ROWID""",
)
#: what ages: the history novatune observed itself. An imported trace (CSV, Prometheus) is the user's record of
#: another time -- a 2013 trace is as old as it is on import -- so it is kept as imported until deleted.
_AGES = "target IN (SELECT name FROM targets WHERE source = 'observe')"


@dataclass(frozen=True)
class TargetInfo:
    """One stored target: its name, first and last sample time (Unix s), the samples it stands for (raw samples
    observed or imported, including those now in buckets), the rows stored, its source (``observe``, ``csv``,
    ``prometheus``) and where its PSI figures came from (``cgroup``, ``host``, or ``""``: none)."""

    name: str
    first_s: float
    last_s: float
    samples: int
    rows: int
    source: str
    psi_source: str = ""

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _num(x: float | None) -> float | None:
    """A float for SQLite: NaN and infinities are stored as NULL (unknown)."""
    return None if x is None or not math.isfinite(x) else float(x)


class UsageStore:
    """The usage history at ``path`` (created when missing).

    Raises:
        UsageError: ``retention_days`` is not a positive number.
        UsageStoreError: the file is unsafe (see the module doc), damaged, or of a newer schema.
    """

    def __init__(self, path: str | os.PathLike[str], *, retention_days: float = 90.0,
                 busy_timeout_s: float = 10.0) -> None:
        if not (isinstance(retention_days, (int, float)) and math.isfinite(retention_days) and retention_days > 0):
            raise UsageError(f"retention_days must be a positive number of days, got {retention_days!r}")
        self.path = Path(path)
        self.retention_days = float(retention_days)
        self.busy_timeout_s = busy_timeout_s
        self._db = SqliteFile(self.path, what="usage store", schema=_SCHEMA, version=SCHEMA_VERSION,
                              unsafe=UsageStoreError, busy_timeout_s=busy_timeout_s, row_factory=False)

    @contextmanager
    def held(self) -> Iterator[None]:
        """While inside, this thread's calls share one connection (closed on exit)."""
        with self._db.held():
            yield

    def file_bytes(self) -> int:
        """The database and its WAL on disk, in bytes."""
        return self._db.file_bytes()

    # ------------------------------------------------------------------ writing
    @staticmethod
    def _target_row(conn: sqlite3.Connection, name: str, source: str, psi_source: str, now: float) -> None:
        conn.execute("INSERT INTO targets (name, source, psi_source, created_s) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (name) DO UPDATE SET source = excluded.source, psi_source = CASE WHEN "
                     "excluded.psi_source = '' THEN psi_source ELSE excluded.psi_source END",
                     (name, source, psi_source, now))

    def _insert(self, conn: sqlite3.Connection, target: str, rows: Iterable[Sequence[float | None]]) -> int:
        cols = ", ".join(_COLS)
        marks = ", ".join("?" for _ in _COLS)
        cur = conn.executemany(f"INSERT OR REPLACE INTO samples (target, res, t, n, {cols}) VALUES (?, 0, ?, 1, "
                               f"{marks})", ((target, *row) for row in rows))
        return cur.rowcount

    def add(self, target: str, samples: Sequence[UsageSample], *, source: str = "observe") -> int:
        """Store ``samples`` of ``target`` (a sample at a time already stored replaces it); OOM kills become
        events. Returns the samples written."""
        return self.add_batch({target: samples}, source=source)

    def add_batch(self, batch: Mapping[str, Sequence[UsageSample]], *, source: str = "observe") -> int:
        """:meth:`add` for several targets in one transaction. Returns the samples written."""

        def row(s: UsageSample) -> list[float | None]:
            means = [_num(getattr(s, f)) for f in MEASURES.values()]
            return [s.t, *means, *means, *(_num(getattr(s, f)) for f in CAPACITY.values())]

        n = 0
        batch = {k: v for k, v in batch.items() if v}
        if not batch:
            return 0
        with self._db.writing() as conn:
            for target, samples in batch.items():
                psi = next((s.psi_source for s in reversed(samples) if s.psi_source), "")
                self._target_row(conn, target, source, psi, samples[-1].t)
                n += self._insert(conn, target, (row(s) for s in samples))
                conn.executemany("INSERT INTO events (target, t, kind, count) VALUES (?, ?, 'oom_kill', ?) ON "
                                 "CONFLICT DO UPDATE SET count = count + excluded.count",
                                 [(target, s.t, s.oom_kills) for s in samples if s.oom_kills > 0])
        return n

    def import_series(self, series: UsageSeries, *, source: str) -> int:
        """Store an imported history (a CSV trace, a Prometheus query) under ``series.target``; memory is taken as
        the working set; OOM times become events. Returns the samples written."""
        n = len(series)
        cap = [series.cpu_capacity, series.mem_capacity]
        thr = series.throttled_ratio

        def row(i: int) -> list[float | None]:
            means: list[float | None] = [float(series.cpu_cores[i]), float(series.mem_gib[i]), None,
                                         None if thr is None else _num(float(thr[i])), None, None, None]
            return [float(series.t[i]), *means, *means, *(None if c is None else _num(float(c[i])) for c in cap)]

        if n == 0:
            return 0
        with self._db.writing() as conn:
            self._target_row(conn, series.target, source, "", float(series.t[-1]))
            written = self._insert(conn, series.target, (row(i) for i in range(n)))
            conn.executemany("INSERT INTO events (target, t, kind, count) VALUES (?, ?, 'oom_kill', 1) ON CONFLICT "
                             "DO NOTHING", [(series.target, t) for t in series.oom_times])
        return written

    def delete(self, target: str) -> None:
        """Forget ``target`` and all its history. Raises: UnknownTarget."""
        with self._db.writing() as conn:
            if conn.execute("DELETE FROM targets WHERE name = ?", (target,)).rowcount == 0:
                raise self._unknown(conn, target)

    # ------------------------------------------------------------------ age
    def _bucket(self, conn: sqlite3.Connection, src: int, size: int, before: float) -> int:
        means = ", ".join(f"SUM({c} * n) / SUM(CASE WHEN {c} IS NULL THEN NULL ELSE n END)" for c in MEASURES)
        maxes = ", ".join(f"MAX({c}_max)" for c in MEASURES)
        caps = ", ".join(f"MAX({c})" for c in CAPACITY)
        merge = ", ".join(
            [f"{c} = CASE WHEN {c} IS NULL THEN excluded.{c} WHEN excluded.{c} IS NULL THEN {c} "
             f"ELSE ({c} * n + excluded.{c} * excluded.n) / (n + excluded.n) END" for c in MEASURES]
            + [f"{c} = MAX(COALESCE({c}, excluded.{c}), COALESCE(excluded.{c}, {c}))"
               for c in [*(f"{m}_max" for m in MEASURES), *CAPACITY]]
            + ["n = n + excluded.n"])
        conn.execute(
            f"INSERT INTO samples (target, res, t, n, {', '.join(_COLS)}) "
            f"SELECT target, {size}, (CAST(t / {size} AS INTEGER) * {size}) + {size / 2}, SUM(n), {means}, {maxes}, "
            f"{caps} FROM samples WHERE res = ? AND t < ? AND {_AGES} GROUP BY target, CAST(t / {size} AS INTEGER) "
            f"ON CONFLICT (target, res, t) DO UPDATE SET {merge}", (src, before))
        return conn.execute(f"DELETE FROM samples WHERE res = ? AND t < ? AND {_AGES}", (src, before)).rowcount

    def downsample(self, now: float) -> dict[str, int]:
        """Raw samples older than 2 days into 5-minute buckets, 5-minute buckets older than 14 days into 1-hour
        buckets (complete buckets only), of observed targets (imports stay as imported). Returns the rows folded
        per step."""
        raw_cut = math.floor((now - RAW_DAYS * DAY) / 300) * 300
        five_cut = math.floor((now - FIVE_MIN_DAYS * DAY) / 3600) * 3600
        with self._db.writing() as conn:
            raw = self._bucket(conn, 0, 300, raw_cut)
            five = self._bucket(conn, 300, 3600, five_cut)
        return {"raw_to_5min": raw, "5min_to_1h": five}

    def prune(self, now: float) -> int:
        """Drop samples and events of observed targets older than ``retention_days`` (imports are kept until
        deleted), and targets left with nothing. Returns the sample rows dropped."""
        cut = now - self.retention_days * DAY
        with self._db.writing() as conn:
            n = conn.execute(f"DELETE FROM samples WHERE t < ? AND {_AGES}", (cut,)).rowcount
            conn.execute(f"DELETE FROM events WHERE t < ? AND {_AGES}", (cut,))
            conn.execute("DELETE FROM targets WHERE NOT EXISTS (SELECT 1 FROM samples WHERE target = name)")
        with self._db.connect() as conn:
            conn.execute("PRAGMA incremental_vacuum")
        return n

    # ------------------------------------------------------------------ reading
    def _unknown(self, conn: sqlite3.Connection, target: str) -> UnknownTarget:
        names = [r[0] for r in conn.execute("SELECT name FROM targets ORDER BY name LIMIT 20")]
        return UnknownTarget(f"no usage history of {target!r} in {self.path}; stored: {', '.join(names) or 'none'}")

    def targets(self) -> list[TargetInfo]:
        """Every stored target, by name."""
        with self._db.connect() as conn:
            rows = conn.execute("SELECT name, MIN(t), MAX(t), SUM(n), COUNT(*), source, psi_source FROM targets JOIN "
                                "samples ON target = name GROUP BY name ORDER BY name").fetchall()
        return [TargetInfo(r[0], float(r[1]), float(r[2]), int(r[3]), int(r[4]), r[5], r[6]) for r in rows]

    def _rows(self, target: str, columns: str, since: float | None, until: float | None) -> list[tuple]:
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        with self._db.connect() as conn:
            if conn.execute("SELECT 1 FROM targets WHERE name = ?", (target,)).fetchone() is None:
                raise self._unknown(conn, target)
            return conn.execute(f"SELECT {columns} FROM samples WHERE target = ? AND t >= ? AND t <= ? ORDER BY t, "
                                "res", (target, lo, hi)).fetchall()

    def frame(self, target: str, *, since: float | None = None, until: float | None = None) -> pd.DataFrame:
        """Every stored row of ``target`` (oldest first) with its resolution (``res_s``: 0 raw, 300, 3600), the
        raw samples it stands for (``n``), the mean and maximum of each measure (``cpu_cores``, ``cpu_cores_max``,
        ``mem_gib``, ``mem_usage_gib``, ``throttled_ratio``, ``psi_cpu``, ...) and the capacities; NaN unknown.

        Raises:
            UnknownTarget: nothing stored of ``target``.
        """
        names = ["t", "res_s", "n", *MEASURES.values(), *(f"{v}_max" for v in MEASURES.values()), *CAPACITY.values()]
        rows = self._rows(target, f"t, res, n, {', '.join(_COLS)}", since, until)
        df = pd.DataFrame.from_records(rows, columns=names).astype(float)
        return df.drop_duplicates("t", keep="first").reset_index(drop=True)

    def series(self, target: str, *, since: float | None = None, until: float | None = None) -> UsageSeries:
        """The history of ``target`` as the shared model: CPU from the means, memory from the maxima, capacity and
        throttling kept; rows with no CPU or memory reading are left out; OOM kills in the window.

        Raises:
            UnknownTarget: nothing stored of ``target``.
        """
        df = self.frame(target, since=since, until=until)
        df = df[np.isfinite(df["cpu_cores"]) & np.isfinite(df["mem_gib_max"])]
        ooms = [t for t, count in self.events(target, since=since, until=until) for _ in range(min(count, 1000))]
        return UsageSeries(target=target, t=df["t"].to_numpy(), cpu_cores=df["cpu_cores"].to_numpy(),
                           mem_gib=df["mem_gib_max"].to_numpy(), cpu_capacity=df["cpu_capacity"].to_numpy(),
                           mem_capacity=df["mem_capacity"].to_numpy(), throttled_ratio=df["throttled_ratio"].to_numpy(),
                           oom_times=tuple(ooms))

    def events(self, target: str, *, since: float | None = None, until: float | None = None) -> list[tuple[float, int]]:
        """OOM kills of ``target``: (time, count) oldest first. Raises: UnknownTarget."""
        lo = -math.inf if since is None else since
        hi = math.inf if until is None else until
        with self._db.connect() as conn:
            if conn.execute("SELECT 1 FROM targets WHERE name = ?", (target,)).fetchone() is None:
                raise self._unknown(conn, target)
            rows = conn.execute("SELECT t, count FROM events WHERE target = ? AND kind = 'oom_kill' AND t >= ? AND "
                                "t <= ? ORDER BY t", (target, lo, hi)).fetchall()
        return [(float(t), int(c)) for t, c in rows]
