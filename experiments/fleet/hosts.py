"""The host registry: every agent of the fleet, its labels, its facts and its heartbeat.

The registry lives in the database of the studies (:attr:`experiments.settings.Paths.optuna_url`: the data
directory's ``optuna.db``, or the fleet's shared PostgreSQL), in a table of its own, ``novatune_hosts``.
Its schema is created and upgraded by alembic, as Optuna and MLflow do it, from the revisions in
``migrations/versions/`` and with a version table of its own (``novatune_alembic_version``; Optuna's
``alembic_version`` in the same database is never touched). ``HostRegistry(url)`` upgrades to the newest
revision when it opens (what the agent does); ``HostRegistry(url, migrate=False)`` creates nothing, and a
database without the table reads as no hosts (what the API, ``/metrics`` and ``novatune fleet hosts`` do).

An agent registers once when it starts (:meth:`HostRegistry.register`: insert, or update after a restart)
and then heartbeats (:meth:`HostRegistry.heartbeat`) with what it runs. A host is *alive* while its last
heartbeat is at most ``dead_after_s`` old (the setting ``fleet_dead_after_s``) and it has not said it
stopped. The times are each agent's own clock (seconds since the epoch): the fleet's clocks are expected to
be NTP-synchronised, as Optuna's heartbeats expect too.

Raises :class:`InvalidHost` (a ``ValueError``; exit 2, HTTP 422) for a host id, a label or a state that is
not allowed, :class:`UnknownHost` (a ``LookupError``; exit 2, HTTP 404) for a heartbeat of a host never
registered, :class:`HostStoreError` (exit 2, HTTP 503) when the database cannot be read or written.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from collectors.errors import NovatuneError
from experiments.storage import check_storage, redact

__all__ = [
    "HOST_ID_RE",
    "HOST_STATES",
    "MIGRATIONS",
    "MIGRATION_LOCK",
    "TABLE",
    "VERSION_TABLE",
    "Host",
    "HostRegistry",
    "HostStoreError",
    "InvalidHost",
    "UnknownHost",
    "check_host_id",
    "default_host_id",
    "host_facts",
    "matches",
    "parse_labels",
]

log = logging.getLogger(__name__)

#: a host id: what ``--host-id`` and ``GET /hosts/{id}`` accept
HOST_ID_RE = r"^[A-Za-z0-9_.-]{1,64}$"
_HOST_ID = re.compile(HOST_ID_RE)
_LABEL_KEY = re.compile(r"[a-z0-9_.-]{1,63}")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9_.-]{0,63}")
_LABEL_FORM = ("labels are KEY=VALUE pairs separated by commas (role=db,zone=a); a key is 1 to 63 of a-z, 0-9, "
               "'_', '.', '-'; a value 0 to 63 of A-Z, a-z, 0-9, '_', '.', '-'")
#: what an agent may say it does: waiting for a trial, running one, or stopped (it shut down cleanly)
HOST_STATES = ("idle", "trial", "stopped")
#: the registry's table and novatune's alembic version table, in the study database
TABLE = "novatune_hosts"
VERSION_TABLE = "novatune_alembic_version"
#: alembic's script directory (env.py, versions/), shipped as package data
MIGRATIONS = Path(__file__).with_name("migrations")
#: alembic's ``context`` and ``op`` are process-wide proxies: one migration at a time in a process (between
#: processes, PostgreSQL's advisory lock in env.py serialises them)
_MIGRATING = threading.Lock()
#: the PostgreSQL advisory lock key novatune's migrations take (any constant: ``novatune`` in ASCII)
MIGRATION_LOCK = 0x6E6F7661_74756E65

_METADATA = sa.MetaData()
#: what the queries address; the schema itself is made by the revisions in migrations/versions/
HOSTS = sa.Table(
    TABLE, _METADATA,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("facts", sa.JSON, nullable=False),
    sa.Column("registered_at", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("study", sa.String(512), nullable=True),
    sa.Column("trial", sa.Integer, nullable=True),
)


class InvalidHost(NovatuneError, ValueError):
    """A host id, labels, facts or a heartbeat state that is not allowed; the message says what is
    (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


class UnknownHost(NovatuneError, LookupError):
    """No host of that id is registered (exit 2, HTTP 404)."""

    exit_code = 2
    http_status = 404


class HostStoreError(NovatuneError):
    """The database of the host registry cannot be reached, read or upgraded (exit 2, HTTP 503)."""

    exit_code = 2
    http_status = 503


# ------------------------------------------------------------------ ids and labels
def check_host_id(host_id: object) -> str:
    """``host_id`` when it is 1 to 64 letters, digits, ``_``, ``.`` or ``-``.

    Raises:
        InvalidHost: anything else.
    """
    if not isinstance(host_id, str) or not _HOST_ID.fullmatch(host_id):
        raise InvalidHost(f"host id {host_id!r} is not allowed: a host id is 1 to 64 letters, digits, '_', '.' "
                          "or '-'")
    return host_id


def default_host_id() -> str:
    """This machine's host name made a valid host id: other characters become ``-``, at most 64 kept
    (``host`` when nothing is left)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname())[:64].strip("-")
    return name or "host"


def _check_label(key: object, value: object, *, part: str | None = None) -> None:
    shown = part if part is not None else f"{key}={value}"
    if not isinstance(key, str) or not _LABEL_KEY.fullmatch(key):
        raise InvalidHost(f"label {shown!r}: key {key!r} is not allowed; {_LABEL_FORM}")
    if not isinstance(value, str) or not _LABEL_VALUE.fullmatch(value):
        raise InvalidHost(f"label {shown!r}: value {value!r} is not allowed; {_LABEL_FORM}")


def parse_labels(text: str) -> dict[str, str]:
    """``"role=db,zone=a"`` -> ``{"role": "db", "zone": "a"}``; empty (or blank) text -> ``{}``.

    Raises:
        InvalidHost: a part without ``=``, an empty part, a key given twice, or a key or value outside the
            allowed form (the message names the part and the form).
    """
    labels: dict[str, str] = {}
    if not text.strip():
        return labels
    for raw in text.split(","):
        part = raw.strip()
        key, sep, value = part.partition("=")
        if not sep:
            raise InvalidHost(f"label {part!r} has no '='; {_LABEL_FORM}")
        key, value = key.strip(), value.strip()
        _check_label(key, value, part=part)
        if key in labels:
            raise InvalidHost(f"label key {key!r} is given twice; {_LABEL_FORM}")
        labels[key] = value
    return labels


def _checked_labels(labels: object) -> dict[str, str]:
    if not isinstance(labels, dict):
        raise InvalidHost(f"labels must be a mapping of strings, not {type(labels).__name__}; {_LABEL_FORM}")
    for key, value in labels.items():
        _check_label(key, value)
    return dict(sorted(labels.items()))


def matches(labels: dict[str, str], selector: dict[str, str]) -> bool:
    """Whether ``labels`` has every label of ``selector`` with the same value (an empty selector matches all)."""
    return all(labels.get(key) == value for key, value in selector.items())


# ------------------------------------------------------------------ hosts
@dataclass(frozen=True)
class Host:
    """One registered agent's host, as last written (times in seconds since the epoch, the agent's clock)."""

    id: str
    labels: dict[str, str]
    facts: dict[str, Any] = field(repr=False)
    registered_at: float
    last_seen: float
    #: ``idle`` (waiting for a trial), ``trial`` (running ``study``'s trial number ``trial``), ``stopped``
    state: str
    study: str | None
    trial: int | None

    def alive(self, now: float, dead_after_s: float) -> bool:
        """Whether the host's last heartbeat is at most ``dead_after_s`` old at ``now`` and it has not stopped."""
        return self.state != "stopped" and now - self.last_seen <= dead_after_s

    def to_dict(self, now: float, dead_after_s: float) -> dict[str, Any]:
        """The host as JSON (``GET /hosts``, ``fleet hosts --json``), with ``alive`` and ``last_seen_ago_s``."""
        return {
            "id": self.id, "labels": dict(self.labels), "alive": self.alive(now, dead_after_s), "state": self.state,
            "study": self.study, "trial": self.trial, "last_seen": self.last_seen,
            "last_seen_ago_s": round(now - self.last_seen, 3), "registered_at": self.registered_at,
            "facts": self.facts,
        }


def _host(row: sa.Row[Any]) -> Host:
    m = row._mapping
    return Host(id=m["id"], labels=dict(m["labels"] or {}), facts=dict(m["facts"] or {}),
                registered_at=float(m["registered_at"]), last_seen=float(m["last_seen"]), state=m["state"],
                study=m["study"], trial=m["trial"])


def _reason(err: BaseException, url: str) -> str:
    """The first line of what the driver said, with the URL's password (if any) hidden."""
    orig = getattr(err, "orig", None) or err
    text = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    password = sa.engine.make_url(url).password
    return text.replace(str(password), "***") if password else text


class HostRegistry:
    """The ``novatune_hosts`` table of the study database ``url`` (an SQLAlchemy URL as
    :attr:`~experiments.settings.Paths.optuna_url` gives it; ``postgresql://`` is taken as psycopg's).

    ``migrate=True`` (an agent): the schema is upgraded to the newest revision now, the database (an SQLite
    file) created if need be. ``migrate=False`` (readers): nothing is connected to until the first read and
    nothing is ever created; a missing SQLite file or a database without the table reads as no hosts.
    Thread safe (one SQLAlchemy engine, a connection per call).

    Raises:
        StorageError: ``url`` is not a storage URL novatune accepts.
        HostStoreError: ``migrate=True`` and the database cannot be reached or upgraded, or holds a revision
            of the registry newer than this novatune knows.
    """

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = check_storage(url)
        self._sqlite_file = self._sqlite_path(self.url)
        self._migrate = migrate
        # a PostgreSQL that does not answer fails a call in seconds (a scrape, a listing), never hangs it
        connect_args = {"connect_timeout": 5} if self._sqlite_file is None else {}
        self._engine: Engine = sa.create_engine(self.url, pool_pre_ping=True, connect_args=connect_args)
        self._table_seen = migrate
        #: the revisions applied when this registry opened (``[]``: the schema was already at head)
        self.applied: list[str] = []
        if migrate:
            self.applied = migrate_schema(self._engine, self.url)

    @staticmethod
    def _sqlite_path(url: str) -> Path | None:
        parsed = sa.engine.make_url(url)
        return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None

    def close(self) -> None:
        """Close the engine's pooled connections (the registry may still be used: it reconnects)."""
        self._engine.dispose()

    def __enter__(self) -> HostRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"HostRegistry({redact(self.url)!r}, migrate={self._migrate})"

    @contextmanager
    def begin(self, what: str, *, of: str = "the host registry") -> Iterator[Connection]:
        """A connection in a transaction of the study database (committed at the end of the block).

        Raises:
            HostStoreError: the database cannot be reached, read or written (``cannot {what} {of} in URL:
                reason``, the password hidden). An ``IntegrityError`` passes through as it is.
        """
        try:
            with self._engine.begin() as conn:
                yield conn
        except IntegrityError:
            raise
        except SQLAlchemyError as err:
            raise HostStoreError(f"cannot {what} {of} in {redact(self.url)}: {_reason(err, self.url)}") from None

    def has_table(self, name: str, *, of: str = "the host registry") -> bool:
        """Whether the database has table ``name`` (always, once this registry migrated it); a missing SQLite
        file has none and is not created."""
        if self._migrate:
            return True
        if self._sqlite_file is not None and not self._sqlite_file.exists():
            return False
        with self.begin("read", of=of) as conn:
            return bool(sa.inspect(conn).has_table(name))

    @property
    def writable(self) -> bool:
        """Whether this registry was opened to write (``migrate=True``)."""
        return self._migrate

    def _readable(self) -> bool:
        """Whether the table exists (a reader never creates it, nor the SQLite file)."""
        if not self._table_seen:
            self._table_seen = self.has_table(TABLE)
        return self._table_seen

    # ---- writes (the agent)
    def register(self, host_id: str, *, labels: dict[str, str], facts: dict[str, Any]) -> Host:
        """Insert the host, or update it when it is registered already (an agent that restarted): its labels
        and facts replaced, ``registered_at`` and ``last_seen`` now, state ``idle``.

        Raises:
            InvalidHost: a bad id, labels that are not allowed, facts that are not a JSON object.
            HostStoreError: the database cannot be written.
        """
        hid = check_host_id(host_id)
        checked_labels, checked_facts = _checked_labels(labels), _checked_facts(facts)
        self._writable()
        now = time.time()
        row: dict[str, Any] = {"labels": checked_labels, "facts": checked_facts, "registered_at": now,
                               "last_seen": now, "state": "idle", "study": None, "trial": None}
        for _attempt in range(3):
            with self.begin("write") as conn:
                if conn.execute(sa.update(HOSTS).where(HOSTS.c.id == hid).values(**row)).rowcount:
                    break
            try:
                with self.begin("write") as conn:
                    conn.execute(sa.insert(HOSTS).values(id=hid, **row))
                break
            except IntegrityError:  # another process registered the same id in between: update it
                continue
        host = self.get(hid)
        if host is None:  # removed by someone else between the write and the read: say so, never a None later
            raise HostStoreError(f"host {hid!r} vanished from the registry right after it was registered")
        return host

    def heartbeat(self, host_id: str, *, state: str = "idle", study: str | None = None,
                  trial: int | None = None) -> None:
        """``last_seen`` now, and what the host does: ``idle``, ``trial`` (with ``study`` and ``trial``) or
        ``stopped``.

        Raises:
            InvalidHost: a bad id or state; ``trial`` without a study and a trial number, or another state with one.
            UnknownHost: the host was never registered.
            HostStoreError: the database cannot be written.
        """
        hid = check_host_id(host_id)
        if state not in HOST_STATES:
            raise InvalidHost(f"host state {state!r} is not allowed; allowed: {', '.join(HOST_STATES)}")
        if state == "trial" and (not isinstance(study, str) or not study or not isinstance(trial, int)
                                 or isinstance(trial, bool) or trial < 0):
            raise InvalidHost(f"state 'trial' needs the study's name and the trial's number (>= 0); got study "
                              f"{study!r}, trial {trial!r}")
        if state != "trial" and (study is not None or trial is not None):
            raise InvalidHost(f"state {state!r} runs no trial: study and trial must be None (got {study!r}, "
                              f"{trial!r})")
        self._writable()
        values = {"last_seen": time.time(), "state": state, "study": study, "trial": trial}
        with self.begin("write") as conn:
            done = conn.execute(sa.update(HOSTS).where(HOSTS.c.id == hid).values(**values)).rowcount
        if not done:
            raise UnknownHost(f"host {hid!r} is not registered: an agent registers before it heartbeats")

    def _writable(self) -> None:
        if not self._migrate:
            raise HostStoreError("this host registry was opened read-only (migrate=False): open it with "
                                 "migrate=True to register or heartbeat")

    # ---- reads
    def get(self, host_id: str) -> Host | None:
        """The host of that id, or None when none is registered.

        Raises:
            InvalidHost: ``host_id`` is not a valid host id.
            HostStoreError: the database cannot be read.
        """
        hid = check_host_id(host_id)
        if not self._readable():
            return None
        with self.begin("read") as conn:
            row = conn.execute(sa.select(HOSTS).where(HOSTS.c.id == hid)).first()
        return None if row is None else _host(row)

    def list(self) -> list[Host]:
        """Every registered host, by id.

        Raises:
            HostStoreError: the database cannot be read.
        """
        if not self._readable():
            return []
        with self.begin("read") as conn:
            rows = conn.execute(sa.select(HOSTS).order_by(HOSTS.c.id)).all()
        return [_host(r) for r in rows]

    def matching(self, selector: dict[str, str]) -> builtins.list[Host]:
        """The hosts whose labels include every label of ``selector`` (:func:`matches`), by id.

        Raises:
            InvalidHost: the selector holds a key or value no label can have.
            HostStoreError: the database cannot be read.
        """
        wanted = _checked_labels(selector)
        return [h for h in self.list() if matches(h.labels, wanted)]


def _checked_facts(facts: object) -> dict[str, Any]:
    if not isinstance(facts, dict) or not all(isinstance(k, str) for k in facts):
        raise InvalidHost(f"facts must be a JSON object (a mapping with string keys), not {type(facts).__name__}")
    try:
        text = json.dumps(facts, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise InvalidHost(f"facts must be JSON (strings, numbers, lists, mappings; no NaN): {err}") from None
    loaded: dict[str, Any] = json.loads(text)
    return loaded


# ------------------------------------------------------------------ schema
def migrate_schema(engine: Engine, url: str) -> list[str]:
    """Upgrade the registry's schema in ``engine``'s database to the newest revision (alembic, the scripts of
    :data:`MIGRATIONS`, version table :data:`VERSION_TABLE`); returns the revisions applied (``[]``: at head).

    Raises:
        HostStoreError: the database cannot be reached or written, or it holds a newer revision than this
            novatune knows.
    """
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    script = ScriptDirectory.from_config(config)
    known = {s.revision for s in script.walk_revisions()}
    for attempt in range(2):
        try:
            with _MIGRATING, engine.begin() as conn:
                found = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()
                if found is not None and found not in known:
                    raise HostStoreError(
                        f"the host registry in {redact(url)} is at schema revision {found!r}, which this novatune "
                        "does not know (a newer novatune upgraded it): upgrade novatune on this host")
                config.attributes["connection"] = conn
                command.upgrade(config, "head")  # env.py records the revision it found, under its lock
            before = config.attributes.get("revision_before")
            applied = [s.revision for s in reversed(list(script.iterate_revisions("head", before)))]
            if applied:
                log.info("host registry in %s: schema upgraded through %s", redact(url), ", ".join(applied))
            return applied
        except (SQLAlchemyError, CommandError) as err:
            if attempt == 0 and isinstance(err, SQLAlchemyError):
                continue  # another process (SQLite: no advisory lock) created the table at the same moment
            raise HostStoreError(f"cannot open the host registry in {redact(url)}: {_reason(err, url)}") from None
    raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------ facts
def host_facts() -> dict[str, Any]:
    """What an agent tells the registry about its host: kernel, CPUs, NUMA layout, memory, and which knobs of
    the catalog exist here and are writable (``knobs.available``; ``knobs.unavailable`` maps the others to
    the reason, as ``novatune knobs list`` shows it). Reads ``/proc`` and ``/sys``; never fails on a missing
    file (a missing part is ``None``)."""
    from actuators import Catalog, KnobContext
    from collectors.kernelfiles import format_cpu_list, parse_meminfo
    from collectors.topology import read_topology

    uname = os.uname()
    topo = read_topology()
    try:
        memory: int | None = parse_meminfo(Path("/proc/meminfo").read_text()).get("MemTotal")
    except OSError:
        memory = None
    available: list[str] = []
    unavailable: dict[str, str] = {}
    for knob in Catalog(context=KnobContext()).knobs():
        reason = knob.available()
        if reason is None:
            available.append(knob.name)
        else:
            unavailable[knob.name] = reason
    return {
        "hostname": socket.gethostname(),
        "kernel": uname.release,
        "kernel_version": uname.version,
        "arch": uname.machine,
        "cpus": len(topo.online) or os.cpu_count(),
        "packages": len(topo.packages()),
        "cores": len(topo.cores()),
        "smt": any(len(c.siblings or ()) > 1 for c in topo.cpus),
        "memory_bytes": memory,
        "numa": {"nodes": len(topo.nodes),
                 "layout": [{"node": n.node, "cpus": None if n.cpus is None else format_cpu_list(n.cpus),
                             "memory_bytes": n.mem_total_bytes} for n in topo.nodes]},
        "disks": sorted(d.name for d in topo.disks if d.size_bytes),
        "nics": sorted(n.name for n in topo.nics),
        "knobs": {"available": sorted(available), "unavailable": dict(sorted(unavailable.items()))},
        "novatune": _version(),
    }


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("novatune")
    except PackageNotFoundError:
        return "0+unknown"
