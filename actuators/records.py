"""The one typed reader of journal records (as Optuna reads its journal in one place).

:meth:`actuators.Journal.records` returns the JSON lines as written (dicts:
the storage format); :func:`parse_record` turns one into a typed record of
its kind and event, and :class:`JournalView` answers the questions asked of a
journal (open knob intents, open resources, kept runs, a run's owners) from
typed records. Session restore, ``recover`` and ``rollback`` read knob
intents through it and restore them through :func:`actuators.restore.restore_intent`.

Parsing never refuses a record; a field of the wrong type reads as None or as
written. ``raw`` is the record as written, for records that close it. What a
record may make novatune do is judged where it is used, in one place each:
a knob intent by :func:`actuators.vetting.vet_intent` (which
:func:`actuators.restore.restore_intent` calls first), a process by
:func:`actuators.ownership.check_signal`, a cgroup by
:func:`actuators.ownership.novatune_cgroup`. An intent refused there is closed
with a ``refused`` record (:data:`REFUSED_EVENT`, the reason in ``error``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CLOSING_EVENTS",
    "KEPT_EVENT",
    "OPENING_EVENTS",
    "REFUSED_EVENT",
    "CgroupRecord",
    "JournalView",
    "KnobClosed",
    "KnobIntent",
    "ProcessRecord",
    "Record",
    "ResourceRecord",
    "LoopRecord",
    "NetnsRecord",
    "RunRecord",
    "ScratchRecord",
    "parse_intent",
    "parse_record",
]

#: events that open something (their writer is the run's owner)
OPENING_EVENTS = frozenset({"begin", "intent", "created"})
#: the ``event`` of the ``kind: run`` record that marks a run's changes as kept (applied to stay)
KEPT_EVENT = "kept"
#: the ``event`` that closes an intent refused on replay (it named something novatune would not write)
REFUSED_EVENT = "refused"
#: events that close a knob intent: put back, or refused for good (never written)
CLOSING_EVENTS = frozenset({"restored", REFUSED_EVENT})


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class Record:
    """What every record has: ``seq`` (unique, increasing), ``time``, ``run``, ``trial``, ``kind``,
    ``event``, the writing process (``owner_pid`` / ``owner_ctime``), and ``raw`` (as written)."""

    seq: int
    time: float | None
    run: str | None
    trial: int | None
    kind: str | None
    event: str | None
    owner_pid: int | None
    owner_ctime: float | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def owner(self) -> tuple[Any, Any]:
        """``(owner_pid, owner_ctime)`` as written (for the same-process check)."""
        return self.raw.get("owner_pid"), self.raw.get("owner_ctime")


@dataclass(frozen=True)
class KnobIntent(Record):
    """``kind: knob, event: intent``: a change about to be written, with what restore needs.

    ``target``: a root-relative file, ``files:<rel>,...``, ``pids:<pid>,...``,
    ``netns:<name>:<rel>`` or (``restore: nic``) ``<netns>:<iface>:<leaf>``;
    ``restore``: the token kind (``file`` when not recorded); ``old``: the raw
    old content (or per-file / per-thread entries); ``root``: the root the
    target is under ("" when the change is not a file's).
    """

    knob: str | None = None
    scope: str | None = None
    target: Any = None
    restore: str = "file"
    old: Any = None
    new: Any = None
    value: Any = None
    root: str | None = None


@dataclass(frozen=True)
class KnobClosed(Record):
    """``kind: knob`` ``applied`` / ``restored`` / ``restore_failed`` / ``refused``: about the intent whose ``seq``
    is ``ref`` (``restored`` and ``refused`` close it)."""

    knob: str | None = None
    target: Any = None
    ref: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class ResourceRecord(Record):
    """``created`` / ``released`` of something a run owns (``target``): a process, a cgroup, a scratch directory."""

    target: Any = None
    note: str | None = None


@dataclass(frozen=True)
class ProcessRecord(ResourceRecord):
    """``kind: process``: a process the run spawned (``target`` its pid, ``ctime`` its create time,
    ``starttime`` its start time in clock ticks after boot and ``boot_id`` the boot: None in records
    of older versions)."""

    ctime: float | None = None
    starttime: int | None = None
    boot_id: str | None = None


@dataclass(frozen=True)
class CgroupRecord(ResourceRecord):
    """``kind: cgroup``: a cgroup directory (or, for v2, a ``cgroup.subtree_control`` and the ``controllers``
    the run enabled there) under ``root``."""

    root: str | None = None
    version: int | None = None
    controllers: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ScratchRecord(ResourceRecord):
    """``kind: scratch``: a directory a workload made outside the data directory."""


@dataclass(frozen=True)
class NetnsRecord(ResourceRecord):
    """``kind: netns``: a network namespace the run created (``target`` its name)."""


@dataclass(frozen=True)
class LoopRecord(ResourceRecord):
    """``kind: loop``: a loop device's backing file the run created (``target`` its path; ``device`` the
    ``loopN`` it was attached as, None before the attach)."""

    device: str | None = None


@dataclass(frozen=True)
class RunRecord(Record):
    """``kind: run``: ``begin``, ``end`` or ``kept`` (with an application's ``application`` metadata)."""

    note: str | None = None


def _base(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "seq": int(raw["seq"]),
        "time": _float(raw.get("time")),
        "run": _str(raw.get("run")),
        "trial": _int(raw.get("trial")),
        "kind": _str(raw.get("kind")),
        "event": _str(raw.get("event")),
        "owner_pid": _int(raw.get("owner_pid")),
        "owner_ctime": _float(raw.get("owner_ctime")),
        "raw": raw,
    }


def _knob(raw: dict[str, Any], base: dict[str, Any]) -> Record:
    if raw.get("event") == "intent":
        return KnobIntent(
            **base, knob=_str(raw.get("knob")), scope=_str(raw.get("scope")), target=raw.get("target"),
            restore=str(raw.get("restore") or "file"), old=raw.get("old"), new=raw.get("new"),
            value=raw.get("value"), root=_str(raw.get("root")),
        )
    return KnobClosed(**base, knob=_str(raw.get("knob")), target=raw.get("target"), ref=_int(raw.get("ref")),
                      error=_str(raw.get("error")))


def parse_record(raw: dict[str, Any]) -> Record:
    """The typed record of one journal line (a dict with an integer ``seq``, as ``Journal.records`` gives).

    Raises:
        KeyError: no ``seq``.
        ValueError: a ``seq`` that is not a number.
    """
    base = _base(raw)
    kind = raw.get("kind")
    if kind == "knob":
        return _knob(raw, base)
    common = {**base, "target": raw.get("target"), "note": _str(raw.get("note"))}
    if kind == "process":
        return ProcessRecord(**common, ctime=_float(raw.get("ctime")), starttime=_int(raw.get("starttime")),
                             boot_id=_str(raw.get("boot_id")))
    if kind == "cgroup":
        controllers = raw.get("controllers")
        return CgroupRecord(**common, root=_str(raw.get("root")), version=_int(raw.get("version")),
                            controllers=tuple(str(c) for c in controllers) if isinstance(controllers, list) else None)
    if kind == "scratch":
        return ScratchRecord(**common)
    if kind == "netns":
        return NetnsRecord(**common)
    if kind == "loop":
        return LoopRecord(**common, device=_str(raw.get("device")))
    if kind == "run":
        return RunRecord(**base, note=_str(raw.get("note")))
    return Record(**base)


def parse_intent(raw: dict[str, Any]) -> KnobIntent:
    """The typed record of a knob intent.

    Raises:
        ValueError: ``raw`` is another kind of record.
        KeyError: no ``seq``.
    """
    rec = parse_record(raw)
    if not isinstance(rec, KnobIntent):
        raise ValueError(f"journal record {raw.get('seq')} is not a knob intent")
    return rec


class JournalView:
    """Typed records of a journal (or of one run) and what they say is open.

    Args:
        records: the records as ``Journal.records`` returns them, or typed ones.
    """

    def __init__(self, records: Iterable[dict[str, Any] | Record]) -> None:
        self.records: list[Record] = [r if isinstance(r, Record) else parse_record(r) for r in records]

    def runs(self) -> list[str]:
        """Every run named, in order of first appearance."""
        return list(dict.fromkeys(r.run for r in self.records if r.run is not None))

    def of_run(self, run: str) -> JournalView:
        """The records of ``run`` only."""
        return JournalView(r for r in self.records if r.run == run)

    def open_intents(self, run: str | None = None) -> list[KnobIntent]:
        """Intents not followed by a ``restored`` (or ``refused``) record, in journal order (an intent
        never marked applied is open too: the write may have happened)."""
        closed = {r.ref for r in self.records if isinstance(r, KnobClosed) and r.event in CLOSING_EVENTS}
        return [r for r in self.records
                if isinstance(r, KnobIntent) and r.seq not in closed and (run is None or r.run == run)]

    def kept_runs(self) -> set[str]:
        """Runs marked kept (a ``kind: run``, ``event: kept`` record): recover never restores them."""
        return {r.run for r in self.records if isinstance(r, RunRecord) and r.event == KEPT_EVENT and r.run is not None}

    def open_resources(self, kind: str, run: str | None = None) -> list[ResourceRecord]:
        """``created`` records of ``kind`` with no later ``released`` for the same run and target."""
        live: dict[Any, ResourceRecord] = {}
        for r in self.records:
            if not isinstance(r, ResourceRecord) or r.kind != kind or (run is not None and r.run != run):
                continue
            key = (r.run, _hashable(r.target))
            if r.event == "created":
                live[key] = r
            elif r.event == "released":
                live.pop(key, None)
        return list(live.values())

    def owners(self) -> set[tuple[Any, Any]]:
        """``(pid, create time)`` of every writer of an opening record (a run is alive while one is)."""
        return {r.owner for r in self.records if r.event in OPENING_EVENTS}


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return repr(value)
    return value
