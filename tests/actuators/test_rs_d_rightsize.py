"""rightsize.*: a running target's cgroup changed through the journal, read back from the kernel, put back byte
for byte (session, kill -9 + recover), and journal records naming anything else refused by vetting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest

from actuators import (
    Catalog,
    ChangeSession,
    Journal,
    KnobContext,
    KnobUnavailable,
    OutOfBounds,
    SysRoot,
    UnknownKnob,
    recover,
)
from actuators.records import parse_intent
from actuators.rightsize import check_cgroup_path, context_of_file
from actuators.vetting import Refused, vet_intent
from tests.actuators.conftest import PYTHON, REPO, fake_target_cgroup, tree_bytes
from tests.actuators.rightsize_target import RealTarget, own_memory_cgroup, real_target

GIB = 1024**3
FILES = (("cpu", "cpu.cfs_quota_us"), ("memory", "memory.limit_in_bytes"), ("cpuset", "cpuset.cpus"))


def _bytes(t: RealTarget) -> dict[str, bytes]:
    return {leaf: t.file(ctl, leaf).read_bytes() for ctl, leaf in FILES}


def _catalog(t: RealTarget) -> Catalog:
    return Catalog(SysRoot("/"), KnobContext(target_cgroup=t.cgroup))


def test_session_writes_the_kernel_files_and_restores_exact_bytes(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    with real_target("busy") as t:
        before = _bytes(t)
        cat = _catalog(t)
        assert cat.get("rightsize.cpu_cores").read() == float(len(os.sched_getaffinity(0)) or 1)  # -1: no limit
        with ChangeSession(journal, run_id="rs", trial=None) as session:
            session.apply_many({cat.get("rightsize.cpu_cores"): 0.5, cat.get("rightsize.memory_gib"): 0.25,
                                cat.get("rightsize.cpuset_cpus"): "0"})
            assert t.file("cpu", "cpu.cfs_quota_us").read_text() == "50000\n"
            assert int(t.file("memory", "memory.limit_in_bytes").read_text()) == GIB // 4
            assert t.file("cpuset", "cpuset.cpus").read_text() == "0\n"
            assert cat.get("rightsize.cpu_cores").read() == 0.5
            intents = [r for r in journal.records() if r.get("event") == "intent"]
            assert {r["target"] for r in intents} == {f"sys/fs/cgroup/{c}{t.cgroup}/{leaf}" for c, leaf in FILES}
            assert all(r["restore"] == "file" for r in intents)
            assert {r["old"] for r in intents} == {b.decode() for b in before.values()}
        assert _bytes(t) == before


def test_memory_floor_and_bounds_refuse_before_any_write(tmp_path: Path) -> None:
    with real_target("idle") as t:
        t.grow(120)
        assert t.child.stdout is not None and t.child.stdout.readline().strip() == "grown"
        before = _bytes(t)
        cat = _catalog(t)
        mem = cat.get("rightsize.memory_gib")
        with pytest.raises(OutOfBounds, match=r"rightsize.memory_gib: 0.1 .*working set; allowed: \[0\.1[4-9]"):
            mem.apply(0.1)
        with pytest.raises(OutOfBounds, match="rightsize.cpu_cores.*allowed"):
            cat.get("rightsize.cpu_cores").apply(64)
        with pytest.raises(OutOfBounds, match="rightsize.cpuset_cpus"):
            cat.get("rightsize.cpuset_cpus").apply("0-63")
        assert _bytes(t) == before


@pytest.mark.parametrize("path", ["/", "", "rel", "/a/../b", "/a//b", "/a/", "/./a", "/a\x00b", "/a b"])
def test_target_path_refused(path: str) -> None:
    from actuators.errors import UnsafePath

    with pytest.raises(UnsafePath, match="allowed"):
        check_cgroup_path(path)
    with pytest.raises(UnknownKnob):
        Catalog(SysRoot("/"), KnobContext(target_cgroup=path)).get("rightsize.cpu_cores")


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[3])
    from actuators import Catalog, ChangeSession, Journal, KnobContext, SysRoot

    journal = Journal(sys.argv[2])
    journal.begin("killed-rs")
    cat = Catalog(SysRoot("/"), KnobContext(target_cgroup=sys.argv[1]))
    session = ChangeSession(journal, run_id="killed-rs", trial=None)
    session.apply(cat.get("rightsize.cpu_cores"), 0.3)
    mem = cat.get("rightsize.memory_gib")

    def stall(token):  # the intent is journaled (fsynced); the process dies before it writes
        print("ready", flush=True)
        time.sleep(120)

    mem.commit = stall
    session.apply(mem, 0.5)
    """
)


def test_kill9_after_journal_before_write_then_recover_restores(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    script = tmp_path / "apply.py"
    script.write_text(KILL_SCRIPT)
    with real_target("idle") as t:
        before = _bytes(t)
        proc = subprocess.Popen([PYTHON, str(script), t.cgroup, str(journal.path), REPO], stdout=subprocess.PIPE,
                                text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            assert t.file("cpu", "cpu.cfs_quota_us").read_text() == "30000\n"
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        rep = recover(journal, root=SysRoot("/"))
        assert rep.ok, rep
        assert rep.runs == ["killed-rs"] and len(rep.restored) == 2
        assert _bytes(t) == before
        assert recover(journal, root=SysRoot("/")).restored == []  # idempotent: every intent closed


# ------------------------------------------------------------------ vetting of hand-written records
def _record(target: str, old: str = "-1\n", knob: str = "rightsize.cpu_cores", root: str = "/") -> dict[str, Any]:
    return {"run": "evil", "trial": None, "kind": "knob", "event": "intent", "knob": knob, "scope": "cgroup",
            "target": target, "restore": "file", "old": old, "new": "1000", "value": 0.01, "root": root}


def _write_journal(path: Path, records: list[dict[str, Any]]) -> Journal:
    journal = Journal(path)
    for r in records:
        journal.append(r)
    return journal


def test_recover_refuses_records_outside_a_target_cgroup(tmp_path: Path) -> None:
    """Hand-written rightsize records naming the root cgroup, a file outside the cgroup tree, a path with '..',
    another knob's file, or a cgroup holding this process: refused, never written.

    Each record's "old" value is the file's current content, so that even a broken vetting would write back
    what is there (the report, not the bytes, is what fails then).
    """
    own = own_memory_cgroup()
    files = {
        "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "rightsize.cpu_cores",  # the root cgroup
        "etc/passwd": "rightsize.cpu_cores",
        "proc/sys/vm/swappiness": "rightsize.cpu_cores",
    }
    if own is not None:  # this pytest process's own memory cgroup: novatune itself is never a target
        files[f"sys/fs/cgroup/memory{own}/memory.limit_in_bytes"] = "rightsize.memory_gib"
    before = {rel: (Path("/") / rel).read_bytes() for rel in files}
    records = [_record(rel, old=before[rel].decode(), knob=knob) for rel, knob in files.items()]
    records += [
        _record("sys/fs/cgroup/cpu/x/../../../../etc/passwd", old=before["etc/passwd"].decode()),
        _record("sys/fs/cgroup/memory/x/memory.limit_in_bytes", old="-1\n"),  # not the cpu knob's file
    ]
    journal = _write_journal(tmp_path / "journal.jsonl", records)
    rep = recover(journal, root=SysRoot("/"), force=True)  # force: the writer of the records is this live process
    assert rep.restored == [] and len(rep.refused) == len(records), rep
    assert {rel: (Path("/") / rel).read_bytes() for rel in files} == before
    if own is not None:
        assert any("never a target" in why and "novatune itself" in why for why in rep.refused), rep.refused


def test_vetting_on_a_fake_tree(tmp_path: Path, fake_root: SysRoot) -> None:
    """Fake targets: one holding pid 1, one holding this process, a symlinked one; an old value out of bounds."""
    fake_target_cgroup(fake_root.root, "/svc/init", procs="1\n")
    fake_target_cgroup(fake_root.root, "/svc/me", procs=f"{os.getpid()}\n")
    fake_target_cgroup(fake_root.root, "/svc/ok")
    os.symlink("ok", fake_root.root / "sys/fs/cgroup/cpu/svc/link")
    root = str(fake_root.root)

    def vet(target: str, old: str = "-1\n", knob: str = "rightsize.cpu_cores") -> Any:
        return vet_intent(parse_intent({"seq": 1, **_record(target, old, knob, root)}), fake_root)

    assert vet("sys/fs/cgroup/cpu/svc/ok/cpu.cfs_quota_us").gone is None
    assert vet("sys/fs/cgroup/cpu/svc/gone/cpu.cfs_quota_us").gone is not None  # the cgroup went away: nothing to do
    refused = {
        "pid 1": ("sys/fs/cgroup/cpu/svc/init/cpu.cfs_quota_us", "-1\n", "init"),
        "novatune": ("sys/fs/cgroup/memory/svc/me/memory.limit_in_bytes", "1073741824\n", "novatune itself"),
        "symlink": ("sys/fs/cgroup/cpu/svc/link/cpu.cfs_quota_us", "-1\n", "symlink"),
        "root cgroup": ("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n", "not a rightsize file"),
        "quota out of bounds": ("sys/fs/cgroup/cpu/svc/ok/cpu.cfs_quota_us", "99999999\n", "outside the hard bounds"),
        "not a quota": ("sys/fs/cgroup/cpu/svc/ok/cpu.cfs_quota_us", "max\n", "not a quota"),
        "memory below the floor": ("sys/fs/cgroup/memory/svc/ok/memory.limit_in_bytes", "4096\n", "hard bounds"),
        "other controller": ("sys/fs/cgroup/cpuset/svc/ok/cpu.cfs_quota_us", "-1\n", "not a rightsize file"),
        "dotdot": ("sys/fs/cgroup/cpu/svc/../svc/ok/cpu.cfs_quota_us", "-1\n", "'..'"),
    }
    for case, (target, old, why) in refused.items():
        knob = "rightsize.memory_gib" if "memory." in target else "rightsize.cpu_cores"
        with pytest.raises(Refused, match=why):
            vet(target, old, knob)
        assert case


def test_recover_writes_a_vetted_record_back(tmp_path: Path, fake_root: SysRoot) -> None:
    fake_target_cgroup(fake_root.root, "/svc/ok")
    quota = fake_root.root / "sys/fs/cgroup/cpu/svc/ok/cpu.cfs_quota_us"
    quota.write_text("20000")
    before = tree_bytes(fake_root.root)
    journal = _write_journal(tmp_path / "j.jsonl", [
        _record("sys/fs/cgroup/cpu/svc/ok/cpu.cfs_quota_us", root=str(fake_root.root)),
        _record("sys/fs/cgroup/cpu/cpu.cfs_quota_us", old="5000\n", root=str(fake_root.root)),
    ])
    rep = recover(journal, root=fake_root, force=True)
    assert len(rep.restored) == 1 and len(rep.refused) == 1
    assert quota.read_text() == "-1\n"
    after = tree_bytes(fake_root.root)
    assert {k for k in after if after[k] != before[k]} == {"sys/fs/cgroup/cpu/svc/ok/cpu.cfs_quota_us"}
    closing = sorted(json.loads(x)["event"] for x in journal.path.read_text().splitlines()
                     if json.loads(x)["event"] in ("refused", "restored"))
    assert closing == ["refused", "restored"]


def test_context_of_file_binds_only_rightsize_files(fake_root: SysRoot) -> None:
    from actuators.errors import UnsafePath

    fake_target_cgroup(fake_root.root, "/a/b")
    ctx = context_of_file(fake_root, "sys/fs/cgroup/memory/a/b/memory.limit_in_bytes")
    assert ctx is not None and ctx.target_cgroup == "/a/b"
    gone = Catalog(fake_root, context_of_file(fake_root, "sys/fs/cgroup/cpu/a/gone/cpu.cfs_quota_us"))
    assert "no cpu directory" in (gone.get("rightsize.cpu_cores").available() or "")
    for bad in ("sys/fs/cgroup/cpu/a/b/cgroup.procs", "sys/fs/cgroup/cpu/cpu.cfs_quota_us",
                "sys/fs/cgroup/blkio/a/b/cpu.cfs_quota_us", "proc/sys/vm/swappiness"):
        with pytest.raises(UnsafePath):
            context_of_file(fake_root, bad)


def _fake_v2(base: Path) -> SysRoot:
    files = {
        "proc/meminfo": "MemTotal:       8388608 kB\n",
        "sys/devices/system/cpu/online": "0-3\n",
        "sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n",
        "sys/fs/cgroup/svc.slice/cpuset.cpus.effective": "0-3\n",
        "sys/fs/cgroup/svc.slice/web.service/cpu.max": "max 100000\n",
        "sys/fs/cgroup/svc.slice/web.service/memory.max": "max\n",
        "sys/fs/cgroup/svc.slice/web.service/memory.current": f"{300 * 1024**2}\n",
        "sys/fs/cgroup/svc.slice/web.service/memory.stat": f"anon 1\ninactive_file {100 * 1024**2}\n",
        "sys/fs/cgroup/svc.slice/web.service/cpuset.cpus": "\n",
        "sys/fs/cgroup/svc.slice/web.service/cgroup.procs": "",
    }
    for rel, text in files.items():
        (base / rel).parent.mkdir(parents=True, exist_ok=True)
        (base / rel).write_text(text)
    return SysRoot(base)


def test_cgroup_v2_through_a_session(tmp_path: Path) -> None:
    root = _fake_v2(tmp_path / "v2")
    before = tree_bytes(root.root)
    cat = Catalog(root, KnobContext(target_cgroup="/svc.slice/web.service"))
    cores, mem, cpus = (cat.get(f"rightsize.{n}") for n in ("cpu_cores", "memory_gib", "cpuset_cpus"))
    assert cores.read() == 4.0 and mem.read() == 8.0  # no limit: the online CPUs, the RAM
    assert cpus.domain.choices == ("0", "0-1", "0-2", "0-3")
    with pytest.raises(OutOfBounds, match=r"allowed: \[0\.244"):  # 1.25 x (300 - 100) MiB
        mem.validate(0.2)
    journal = Journal(tmp_path / "journal.jsonl")
    with ChangeSession(journal, run_id="v2", trial=None) as session:
        session.apply_many({cores: 1.5, mem: 0.5, cpus: "0-1"})
        d = root.root / "sys/fs/cgroup/svc.slice/web.service"
        assert (d / "cpu.max").read_text() == "150000 100000"
        assert (d / "memory.max").read_text() == str(GIB // 2)
        assert (d / "cpuset.cpus").read_text() == "0-1"
    assert tree_bytes(root.root) == before
    (root.root / "sys/fs/cgroup/svc.slice/web.service/cgroup.procs").write_text("1\n")  # now it holds init
    with ChangeSession(journal, run_id="v2b", trial=None) as session, pytest.raises(KnobUnavailable, match="init"):
        session.apply(cores, 1.0)
    assert (root.root / "sys/fs/cgroup/svc.slice/web.service/cpu.max").read_text() == "max 100000\n"
