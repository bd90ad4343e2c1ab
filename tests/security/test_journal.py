"""Class 2: the journal is not trusted on replay.

``recover`` (every study start, the service's watcher, ``study stop``) and ``rollback`` (CLI and
``POST /tuning/rollback/{id}``) replay journal records. Before, a record could make root write any file
under ``/proc/sys`` or ``/sys`` (``kernel/core_pattern``, ``device/delete``, ``cgroup.kill``), rollback
checked no path at all, and any recorded pid whose create time matched was killed. Each test below
plants hostile records on a fake root (and processes this test spawns), replays them through the real
faces, and asserts the refusal (named, with why), that no byte changed and that the process lives.
"""

from __future__ import annotations

import importlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from actuators import Catalog, ChangeSession, Journal, KnobUnavailable, SysRoot
from actuators.errors import UnsafePath
from actuators.journal import process_ctime
from actuators.ownership import process_starttime
from experiments.cli import main
from experiments.deploy.applications import ApplyError
from experiments.settings import Paths, Settings
from tests.actuators.conftest import build_fake_tree, tree_bytes

TOKEN = "security-journal-token-0123456789"
#: the victim files a hostile record aims at, inside the fake root
VICTIMS = {
    "proc/sys/kernel/core_pattern": "core\n",
    "sys/devices/pci0000:00/virtio1/block/vda/device/delete": "0\n",
    "sys/devices/pci0000:00/virtio1/block/vda/device/run": "0\n",
    "sys/fs/cgroup/cpu/system.slice/cgroup.kill": "0\n",
    "sys/fs/cgroup/cpu/system.slice/cgroup.procs": "1\n",
}


@pytest.fixture
def root(tmp_path: Path) -> SysRoot:
    """The fake tree, plus the victims and two planted symlinks (one on a knob's file, one on its directory)."""
    base = build_fake_tree(tmp_path / "root")
    for rel, text in VICTIMS.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    (base / "proc/sys/vm/stat_interval").unlink()
    (base / "proc/sys/vm/stat_interval").symlink_to("../kernel/core_pattern")
    (base / "sys/kernel/mm/ksm/run").unlink()
    (base / "sys/kernel/mm/ksm").rmdir()
    (base / "sys/kernel/mm/ksm").symlink_to("../../devices/pci0000:00/virtio1/block/vda/device")
    return SysRoot(base)


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is not novatune's (not in a novatune cgroup), killed at the end."""
    p = subprocess.Popen(["sleep", "120"])
    try:
        yield p
    finally:
        p.kill()
        p.wait()


def _hostile_knobs(root: SysRoot) -> list[tuple[str, str, str, str]]:
    """(knob, target, old, what the refusal must say) of each hostile intent."""
    return [
        ("kernel.core_pattern", "proc/sys/kernel/core_pattern", "|/tmp/evil %p\n", "no knob family names"),
        ("vm.swappiness", "proc/sys/kernel/core_pattern", "|/tmp/evil %p\n", "vm.swappiness writes"),
        ("block.vda.scheduler", "sys/block/vda/device/delete", "1", "block.vda.scheduler writes"),
        ("sizing.cpu_weight", "sys/fs/cgroup/cpu/system.slice/cgroup.kill", "1", "not a novatune cgroup"),
        ("vm.swappiness", "../../etc/passwd", "root::0:0::/:/bin/sh\n", "'.' or '..' components"),
        ("vm.stat_interval", "proc/sys/vm/stat_interval", "1\n", "is a symlink"),
        ("ksm.run", "sys/kernel/mm/ksm/run", "1\n", "symlink where the kernel makes none"),
        ("vm.swappiness", "proc/sys/vm/swappiness", "1000\n", "outside the hard bounds"),
    ]


def _plant(journal: Journal, run: str, root: SysRoot) -> None:
    for knob, target, old, _ in _hostile_knobs(root):
        journal.append({"run": run, "kind": "knob", "event": "intent", "knob": knob, "target": target,
                        "old": old, "new": "", "restore": "file", "root": str(root.root)})


def _dead(journal: Journal) -> None:
    """Every run of the journal looks dead: its writer is a pid that does not exist."""
    recs = journal.records()
    for r in recs:
        r["owner_pid"], r["owner_ctime"] = 2**22 + 1, 1.0
    journal.path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def _process(journal: Journal, run: str, pid: int, **fields: Any) -> None:
    journal.append({"run": run, "kind": "process", "event": "created", "target": pid, **fields})


def test_recover_refuses_hostile_records_writes_nothing_and_kills_no_stranger(
    tmp_path: Path, root: SysRoot, stranger: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = Paths(tmp_path / "home").ensure()
    journal = Journal(paths.journal)
    # a legitimate crashed run: its change must still be put back
    legit = Catalog(root).get("vm.dirty_ratio")
    crashed = ChangeSession(journal, run_id="crashed", trial=0)
    before = tree_bytes(root.root)
    crashed.apply(legit, 30)
    crashed._stack.clear()
    _plant(journal, "evil", root)
    ctime, start = process_ctime(stranger.pid), process_starttime(stranger.pid)
    assert ctime is not None and start is not None
    # an older version's record: no start time, and the process is in no novatune cgroup
    _process(journal, "evil-old", stranger.pid, ctime=ctime)
    _process(journal, "evil", stranger.pid, ctime=ctime, starttime=start - 1)  # the pid "reused"
    _process(journal, "evil", 1, ctime=process_ctime(1), starttime=process_starttime(1))
    _process(journal, "evil", 2, starttime=process_starttime(2))  # kthreadd
    _process(journal, "evil", os.getpid(), ctime=process_ctime(os.getpid()), starttime=process_starttime(os.getpid()))
    _process(journal, "evil", -1, ctime=1.0)  # kill(-1) signals every process
    journal.append({"run": "evil", "kind": "cgroup", "event": "created", "target": "sys/fs/cgroup/cpu/system.slice",
                    "root": str(root.root), "version": 1})
    _dead(journal)
    with open(journal.path, "a") as f:  # fields of other types than any writer's: judged, never crash recover
        f.write(json.dumps({"seq": 99, "run": "odd", "kind": "process", "event": "created", "target": "1 -1",
                            "owner_pid": "abc", "owner_ctime": "x"}) + "\n")
        f.write(json.dumps({"seq": 100, "run": "odd", "kind": "knob", "event": "intent", "knob": "vm.swappiness",
                            "target": "proc/sys/vm/swappiness", "old": ["1000"], "root": str(root.root),
                            "owner_pid": -1}) + "\n")

    monkeypatch.setenv("NOVATUNE_HOME", str(paths.home))
    # `novatune recover` acts on the fake tree (the module, not the function the package re-exports)
    monkeypatch.setattr(importlib.import_module("actuators.recover"), "SysRoot", lambda: root)
    code = main(["recover", "--json"])
    out = capsys.readouterr().out
    report = json.loads(out)
    assert code == 2, out  # refused records: bad input
    assert report["failed"] == [] and report["killed"] == [], report
    refused = "\n".join(report["refused"])
    for knob, target, _, why in _hostile_knobs(root):
        assert any(f"knob '{knob}', target '{target}'" in r and why in r for r in report["refused"]), (knob, why)
    assert f"process {stranger.pid}" in refused and "cannot prove" in refused
    assert "pid 1 is never signalled" in refused and "pid 2 is kthreadd" in refused
    assert f"pid {os.getpid()} is novatune itself" in refused and "-1" in refused
    assert "sys/fs/cgroup/cpu/system.slice" in refused and "not a novatune cgroup" in refused
    assert "'1 -1' is not a pid" in refused and "no raw old content recorded" in refused
    outcomes = {(k["knob"], k["outcome"]) for k in report["knobs"]}
    assert ("vm.dirty_ratio", "restored") in outcomes
    assert tree_bytes(root.root) == before  # the legit change undone, and not one other byte changed
    assert stranger.poll() is None, "a process that is not novatune's was killed"
    # refused records are closed as such: the next recover (every study start) has nothing left to do
    assert main(["recover", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["refused"] == [] and again["knobs"] == []


def _apply_with_hostile_records(tmp_path: Path, root: SysRoot) -> tuple[Paths, str, dict[str, bytes | str]]:
    """A real application on the fake root (kernel.timer_migration 1 -> 0), then hostile intents in its run."""
    from experiments.deploy.apply import apply_config

    paths = Paths(tmp_path / "home").ensure()
    app = apply_config({"kernel.timer_migration": 0}, paths=paths, source="test", catalog=Catalog(root))
    assert app.state == "applied", app
    _plant(Journal(paths.journal), app.id, root)
    return paths, app.id, tree_bytes(root.root)


def test_rollback_refuses_hostile_records_on_every_face(
    tmp_path: Path, root: SysRoot, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments.deploy.rollback import rollback
    from experiments.service import create_app

    paths, app_id, applied = _apply_with_hostile_records(tmp_path, root)
    assert (root.root / "proc/sys/kernel/timer_migration").read_text() == "0"
    monkeypatch.setattr("experiments.deploy.rollback.default_catalog", lambda **_: Catalog(root))
    reasons = [why for *_, why in _hostile_knobs(root)]

    with pytest.raises(ApplyError) as err:
        rollback(app_id, paths=paths, catalog=Catalog(root))
    msg = str(err.value)
    assert "name something novatune would not write (nothing was changed)" in msg
    assert all(why in msg for why in reasons), msg
    assert tree_bytes(root.root) == applied

    monkeypatch.setenv("NOVATUNE_HOME", str(paths.home))
    monkeypatch.setenv("COLUMNS", "2000")  # one line per message
    assert main(["rollback", app_id]) == 2
    shown = capsys.readouterr().err
    assert "nothing was changed" in shown and "no knob family names 'kernel.core_pattern'" in shown
    assert tree_bytes(root.root) == applied

    with TestClient(create_app(paths, Settings(api_token=TOKEN)), base_url="http://127.0.0.1") as client:
        res = client.post(f"/tuning/rollback/{app_id}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert res.status_code == 422, res.text
    assert all(why in res.json()["detail"] for why in reasons), res.json()
    assert tree_bytes(root.root) == applied

    # --force: the legitimate record is put back, the hostile ones are reported and never written
    rb = rollback(app_id, paths=paths, force=True, catalog=Catalog(root))
    assert [k.knob for k in rb.knobs] == ["kernel.timer_migration"] and len(rb.refused) == len(reasons)
    after = tree_bytes(root.root)
    assert after.pop("proc/sys/kernel/timer_migration") == b"1\n"
    applied.pop("proc/sys/kernel/timer_migration")
    assert after == applied


def test_a_change_whose_old_value_could_not_be_put_back_is_not_made(tmp_path: Path, root: SysRoot) -> None:
    """The check the replay makes is made before the intent is journaled: no record that recover would refuse."""
    (root.root / "proc/sys/vm/swappiness").write_text("250\n")  # outside [0, 200]: not novatune's to write back
    journal = Journal(tmp_path / "j.jsonl")
    before = tree_bytes(root.root)
    with ChangeSession(journal, run_id="r", trial=0) as s, pytest.raises(KnobUnavailable, match="outside the hard"):
        s.apply(Catalog(root).get("vm.swappiness"), 10)
    assert tree_bytes(root.root) == before and journal.records() == []


def test_the_journal_file_is_opened_only_when_it_is_ours(tmp_path: Path) -> None:
    victim = tmp_path / "shadow"
    victim.write_text("root:*:19000:0:99999:7:::\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(victim)
    with pytest.raises(UnsafePath, match="symlink"):
        Journal(link).begin("r")
    with pytest.raises(UnsafePath, match="symlink"):
        Journal(link).records()
    assert victim.read_text() == "root:*:19000:0:99999:7:::\n"

    hard = tmp_path / "hard.jsonl"
    os.link(victim, hard)
    with pytest.raises(UnsafePath, match="hard link"):
        Journal(hard).begin("r")
    assert victim.read_text() == "root:*:19000:0:99999:7:::\n"

    planted = tmp_path / "planted.jsonl"
    planted.write_text(json.dumps({"seq": 1, "run": "x", "kind": "knob", "event": "intent"}) + "\n")
    planted.chmod(0o666)
    with pytest.raises(UnsafePath, match="writable by others"):
        Journal(planted).records()
    planted.chmod(0o600)
    if os.geteuid() == 0:
        os.chown(planted, 65534, 65534)
        with pytest.raises(UnsafePath, match="owned by uid 65534"):
            Journal(planted).records()
    assert stat.S_IMODE(planted.stat().st_mode) == 0o600
