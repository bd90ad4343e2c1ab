"""The typed reader of journal records and the one restore path that session, recover and rollback share."""

from __future__ import annotations

import pytest

from actuators import Catalog, ChangeSession, Journal, SysRoot, recover
from actuators.records import (
    CgroupRecord,
    KnobClosed,
    KnobIntent,
    ProcessRecord,
    Record,
    RunRecord,
    ScratchRecord,
    parse_intent,
    parse_record,
)
from actuators.restore import RESTORERS, Refused, Skipped, owner_of, restore_intent


def test_every_kind_of_record_is_typed(fake_root: SysRoot, journal: Journal) -> None:
    journal.begin("r")
    s = ChangeSession(journal, run_id="r", trial=2)
    s.apply(Catalog(fake_root).get("vm.swappiness"), 10)
    journal.record_process("r", 1, 123.0)
    journal.record_cgroup("r", "sys/fs/cgroup/cpu/novatune-x", root=str(fake_root.root), version=1)
    journal.record_scratch("r", "/tmp/novatune-x")
    s.restore_all()
    journal.end("r")
    types = [type(r) for r in journal.view().records]
    assert types == [RunRecord, KnobIntent, KnobClosed, ProcessRecord, CgroupRecord, ScratchRecord, KnobClosed,
                     RunRecord]
    intent = journal.view().records[1]
    assert isinstance(intent, KnobIntent)
    assert (intent.knob, intent.target, intent.old, intent.new, intent.restore, intent.trial, intent.root) == (
        "vm.swappiness", "proc/sys/vm/swappiness", "60\n", "10", "file", 2, str(fake_root.root))
    assert intent.raw["seq"] == intent.seq and owner_of(intent).name == "vm"
    closed = journal.view().records[-2]
    assert isinstance(closed, KnobClosed) and closed.ref == intent.seq and closed.event == "restored"


def test_odd_records_parse_and_are_judged_where_they_are_used() -> None:
    rec = parse_record({"seq": 7, "kind": "knob", "event": "intent", "run": 5, "target": ["x"], "old": None})
    assert isinstance(rec, KnobIntent) and rec.run == "5" and rec.restore == "file" and rec.target == ["x"]
    assert type(parse_record({"seq": 8, "kind": "weird"})) is Record
    with pytest.raises(ValueError, match="not a knob intent"):
        parse_intent({"seq": 9, "kind": "run", "event": "begin"})
    with pytest.raises(Refused, match="no knob family names None"):
        restore_intent(rec, SysRoot("/nonexistent-root"))


def test_view_open_intents_resources_and_kept_runs(journal: Journal) -> None:
    journal.append({"run": "a", "kind": "knob", "event": "intent", "knob": "x", "target": "proc/sys/x"})
    journal.append({"run": "a", "kind": "knob", "event": "restored", "ref": 1})
    journal.append({"run": "b", "kind": "knob", "event": "intent", "knob": "y", "target": "proc/sys/y"})
    journal.record_cgroup("b", "sys/fs/cgroup/cpu/novatune-b", root="/", version=1)
    journal.release_cgroup("b", "sys/fs/cgroup/cpu/novatune-b")
    journal.record_scratch("b", "/tmp/novatune-b")
    journal.append({"run": "b", "kind": "run", "event": "kept"})
    view = journal.view()
    assert [e.knob for e in view.open_intents()] == ["y"] and view.open_intents("a") == []
    assert view.open_resources("cgroup") == []
    assert [r.target for r in view.open_resources("scratch")] == ["/tmp/novatune-b"]
    assert view.kept_runs() == {"b"} and view.runs() == ["a", "b"]
    records = journal.records()  # the dict API reads through the same view
    assert [e["knob"] for e in Journal.open_entries(records)] == ["y"] and Journal.kept_runs(records) == {"b"}


def test_session_recover_and_rollback_share_the_restore_path(
    fake_root: SysRoot, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    real = RESTORERS["file"]

    def counting(intent: KnobIntent, root: SysRoot) -> str:
        seen.append(str(intent.knob))
        return real(intent, root)

    monkeypatch.setitem(RESTORERS, "file", counting)
    knob = Catalog(fake_root).get("vm.swappiness")
    with ChangeSession(journal, run_id="s", trial=0) as s:
        s.apply(knob, 10)
    crashed = ChangeSession(journal, run_id="c", trial=0)
    crashed.apply(knob, 20)
    crashed._stack.clear()
    assert recover(journal, root=fake_root, force=True).ok
    assert seen == ["vm.swappiness", "vm.swappiness"] and knob.read() == 60
    elsewhere = parse_intent({**journal.records()[0], "root": "/elsewhere"})
    with pytest.raises(Skipped, match="recorded under root /elsewhere"):
        restore_intent(elsewhere, fake_root)
