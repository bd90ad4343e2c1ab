"""Journal durability, ChangeSession ordering/isolation, and recover on the fake tree."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from actuators import ActuatorError, Catalog, ChangeSession, Journal, OutOfBounds, SysRoot, recover
from actuators.sysroot import SysRoot as _SysRoot
from tests.actuators.conftest import tree_bytes


def test_intent_is_durable_before_the_write_and_recover_restores(
    fake_root: SysRoot, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = tree_bytes(fake_root.root)
    knob = Catalog(fake_root).get("vm.swappiness")
    real_write = _SysRoot.write
    seen: list[list[dict]] = []

    def crashing_write(self: SysRoot, rel: str, data: str) -> None:
        # what is on disk right now, read by a separate reader
        seen.append(Journal(journal.path).records())
        if len(seen) == 1:
            real_write(self, rel, data)  # the change lands ...
        raise ActuatorError("simulated crash")  # ... and everything after it fails

    monkeypatch.setattr(_SysRoot, "write", crashing_write)
    with pytest.raises(ActuatorError), ChangeSession(journal, run_id="r1", trial=3) as s:
        s.apply(knob, 10)
    intent = seen[0][-1]
    assert (intent["event"], intent["knob"], intent["old"], intent["new"]) == ("intent", "vm.swappiness", "60\n", "10")
    assert intent["target"] == "proc/sys/vm/swappiness" and intent["trial"] == 3 and intent["run"] == "r1"
    assert intent["owner_pid"] == os.getpid() and intent["owner_ctime"] > 0
    assert (fake_root.root / "proc/sys/vm/swappiness").read_text() == "10"
    events = [r["event"] for r in journal.records()]
    assert events == ["intent", "restore_failed"]
    monkeypatch.undo()

    # the owner (this process) is alive: skipped unless forced
    rep = recover(journal, root=fake_root)
    assert rep.skipped_live == ["r1"] and not rep.restored
    rep = recover(journal, root=fake_root, force=True)
    assert rep.ok and len(rep.restored) == 1, rep
    assert tree_bytes(fake_root.root) == before
    assert Journal.open_entries(journal.records()) == []
    # idempotent
    again = recover(journal, root=fake_root, force=True)
    assert again.restored == [] and again.failed == []


def test_torn_last_line_is_tolerated(journal: Journal) -> None:
    journal.begin("r")
    journal.end("r")
    with open(journal.path, "ab") as f:
        f.write(b'{"seq": 3, "kind": "kno')  # crash mid-write
    recs = journal.records()
    assert [r["event"] for r in recs] == ["begin", "end"]
    assert journal.skipped_lines == 1
    rec = Journal(journal.path).begin("r2")  # a new writer process
    assert rec["seq"] == 3
    lines = journal.path.read_bytes().split(b"\n")
    assert json.loads(lines[-2])["run"] == "r2"
    assert [r["seq"] for r in journal.records()] == [1, 2, 3]


def test_records_are_one_json_object_per_line_with_fields(fake_root: SysRoot, journal: Journal) -> None:
    knob = Catalog(fake_root).get("vm.swappiness")
    with ChangeSession(journal, run_id="r", trial=1) as s:
        s.apply(knob, 20)
    lines = journal.path.read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    assert [r["event"] for r in recs] == ["intent", "applied", "restored"]
    for r in recs:
        for key in ("seq", "time", "run", "trial", "kind", "event", "knob", "scope", "target", "owner_pid",
                    "owner_ctime"):
            assert key in r
    assert recs[1]["ref"] == recs[2]["ref"] == recs[0]["seq"]
    assert recs[0]["scope"] == "host" and recs[0]["root"] == str(fake_root.root)


def test_restore_all_reverse_order_and_isolated(fake_root: SysRoot, journal: Journal) -> None:
    cat = Catalog(fake_root)
    before = tree_bytes(fake_root.root)
    s = ChangeSession(journal, run_id="r", trial=0)
    s.apply(cat.get("vm.swappiness"), 5)
    s.apply(cat.get("vm.dirty_ratio"), 40)
    s.apply(cat.get("thp.enabled"), "always")
    assert s.changed == ["vm.swappiness", "vm.dirty_ratio", "thp.enabled"]
    (fake_root.root / "proc/sys/vm/dirty_ratio").unlink()  # this restore must fail
    failures = s.restore_all()
    assert len(failures) == 1 and failures[0].startswith("vm.dirty_ratio")
    assert s.failures == failures
    after = tree_bytes(fake_root.root)
    del before["proc/sys/vm/dirty_ratio"]
    assert after == before  # the others were restored
    recs = journal.records()
    closing = [(r["knob"], r["event"]) for r in recs if r["event"] in ("restored", "restore_failed")]
    assert closing == [("thp.enabled", "restored"), ("vm.dirty_ratio", "restore_failed"), ("vm.swappiness", "restored")]
    assert [e["knob"] for e in Journal.open_entries(recs)] == ["vm.dirty_ratio"]


def test_exit_raises_when_a_restore_fails(fake_root: SysRoot, journal: Journal) -> None:
    with pytest.raises(ActuatorError, match="restore failed"), ChangeSession(journal, run_id="r", trial=0) as s:
        s.apply(Catalog(fake_root).get("vm.swappiness"), 5)
        (fake_root.root / "proc/sys/vm/swappiness").unlink()


def test_noop_change_records_nothing(fake_root: SysRoot, journal: Journal) -> None:
    with ChangeSession(journal, run_id="r", trial=0) as s:
        ch = s.apply(Catalog(fake_root).get("vm.swappiness"), 60)
    assert not ch.changes
    assert journal.records() == []


def test_out_of_bounds_journals_nothing(fake_root: SysRoot, journal: Journal) -> None:
    with ChangeSession(journal, run_id="r", trial=0) as s, pytest.raises(OutOfBounds):
        s.apply(Catalog(fake_root).get("vm.swappiness"), 201)
    assert journal.records() == []


def test_verify_mismatch_restores_and_raises(
    fake_root: SysRoot, journal: Journal, monkeypatch: pytest.MonkeyPatch
) -> None:
    knob = Catalog(fake_root).get("vm.swappiness")
    monkeypatch.setattr(type(knob), "verify", lambda self, value: False)
    with ChangeSession(journal, run_id="r", trial=0) as s, pytest.raises(ActuatorError, match="reads back"):
        s.apply(knob, 7)
    assert (fake_root.root / "proc/sys/vm/swappiness").read_text() == "60\n"
    assert [r["event"] for r in journal.records()] == ["intent", "restored"]


def _dirty(root: SysRoot) -> tuple[int, int]:
    r = root.root / "proc/sys/vm"
    return int((r / "dirty_ratio").read_text()), int((r / "dirty_background_ratio").read_text())


@pytest.mark.parametrize("target", [(40, 30), (8, 6), (15, 12), (25, 3), (20, 19)])
def test_apply_many_keeps_dirty_invariant(
    fake_root: SysRoot, journal: Journal, monkeypatch: pytest.MonkeyPatch, target: tuple[int, int]
) -> None:
    cat = Catalog(fake_root)
    ratio, bg = cat.get("vm.dirty_ratio"), cat.get("vm.dirty_background_ratio")
    real_write = _SysRoot.write
    states: list[tuple[int, int]] = []

    def watching_write(self: SysRoot, rel: str, data: str) -> None:
        real_write(self, rel, data)
        states.append(_dirty(fake_root))

    monkeypatch.setattr(_SysRoot, "write", watching_write)
    with ChangeSession(journal, run_id="r", trial=0) as s:
        s.apply_many({bg: target[1], ratio: target[0]})
        assert _dirty(fake_root) == target
    assert states and all(b < r for r, b in states), states
    assert _dirty(fake_root) == (20, 10)


def test_dirty_relation_refused(fake_root: SysRoot, journal: Journal) -> None:
    cat = Catalog(fake_root)
    ratio, bg = cat.get("vm.dirty_ratio"), cat.get("vm.dirty_background_ratio")
    before = tree_bytes(fake_root.root)
    with pytest.raises(OutOfBounds, match="below vm.dirty_ratio"):
        bg.apply(25)  # current dirty_ratio is 20
    with pytest.raises(OutOfBounds, match="above vm.dirty_background_ratio"):
        ratio.apply(10)  # current background is 10
    with ChangeSession(journal, run_id="r", trial=0) as s, pytest.raises(OutOfBounds):
        s.apply_many({ratio: 30, bg: 30})
    assert tree_bytes(fake_root.root) == before
    assert journal.records() == []


def test_recover_refuses_targets_outside_allowed_trees(fake_root: SysRoot, journal: Journal) -> None:
    journal.append(
        {"run": "evil", "kind": "knob", "event": "intent", "knob": "x", "target": "etc/passwd",
         "old": "pwned\n", "new": "", "root": str(fake_root.root), "restore": "file"}
    )
    journal.append(
        {"run": "evil", "kind": "knob", "event": "intent", "knob": "vm.swappiness",
         "target": "proc/sys/../../etc/passwd", "old": "pwned\n", "new": "", "root": str(fake_root.root),
         "restore": "file"}
    )
    rep = recover(journal, root=fake_root, force=True)
    assert rep.failed == [] and not rep.restored and len(rep.refused) == 2, rep
    assert [k["outcome"] for k in rep.knobs] == ["refused", "refused"]
    assert (fake_root.root / "etc/passwd").read_text().startswith("root:")
    assert recover(journal, root=fake_root, force=True).refused == []  # closed as refused: reported once


def test_recover_skips_entries_of_another_root(tmp_path: Path, fake_root: SysRoot, journal: Journal) -> None:
    s = ChangeSession(journal, run_id="r", trial=0)
    s.apply(Catalog(fake_root).get("vm.swappiness"), 1)
    other = SysRoot(tmp_path)  # not where the change was made
    rep = recover(journal, root=other, force=True)
    assert rep.restored == [] and len(rep.skipped) == 1
    rep = recover(journal, root=fake_root, force=True)
    assert len(rep.restored) == 1
    assert (fake_root.root / "proc/sys/vm/swappiness").read_text() == "60\n"


def test_recover_deletes_a_dead_runs_scratch_directory_and_nothing_else(tmp_path: Path, journal: Journal) -> None:
    import tempfile

    scratch = Path(tempfile.mkdtemp(prefix="novatune-pg-"))
    (scratch / "data").mkdir()
    (scratch / "data" / "PG_VERSION").write_text("15\n")
    outside = tmp_path / "novatune-keep"  # not directly under the system temp dir
    outside.mkdir()
    victim = tmp_path / "precious"
    victim.mkdir()
    link = Path(tempfile.gettempdir()) / f"novatune-link-{os.getpid()}"
    link.symlink_to(victim)
    try:
        for p in (scratch, outside, link):
            journal.record_scratch("dead", p)
        rep = recover(journal, force=True)
        assert rep.scratch_removed == [str(scratch)] and not scratch.exists()
        assert outside.is_dir() and victim.is_dir() and link.is_symlink()
        assert len([f for f in rep.refused if "refused scratch" in f]) == 2 and rep.failed == []
        assert recover(journal, force=True).scratch_removed == []  # journaled as released: idempotent
    finally:
        link.unlink(missing_ok=True)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
