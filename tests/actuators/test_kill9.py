"""SIGKILL a process in the middle of a trial; recover puts the tree back and kills its child."""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
from pathlib import Path

from actuators import Journal, SysRoot, recover
from actuators.journal import process_ctime
from tests.actuators.conftest import PYTHON, REPO, tree_bytes

SCRIPT = textwrap.dedent(
    """
    import subprocess, sys, time
    sys.path.insert(0, sys.argv[3])
    from actuators import Catalog, ChangeSession, Journal, KnobContext, SysRoot, WorkloadCgroup

    root, journal = SysRoot(sys.argv[1]), Journal(sys.argv[2])
    run = "killed-run"
    journal.begin(run)
    cg = WorkloadCgroup.create("k9", journal=journal, run_id=run, root=root)
    for name, content in (("cpu.cfs_quota_us", "-1\\n"), ("cpu.cfs_period_us", "100000\\n"), ("cgroup.procs", "")):
        with open(cg.path / name, "w") as f:  # the fake kernel
            f.write(content)
    child = subprocess.Popen(["sleep", "300"], start_new_session=True)
    journal.record_process(run, child.pid)
    cat = Catalog(root, KnobContext(cgroup=cg))
    session = ChangeSession(journal, run_id=run, trial=0)
    session.apply_many({
        cat.get("vm.dirty_background_ratio"): 30,
        cat.get("vm.dirty_ratio"): 40,
        cat.get("vm.swappiness"): 1,
        cat.get("thp.enabled"): "never",
        cat.get("block.vda.scheduler"): "bfq",
        cat.get("block.loop0.read_ahead_kb"): 4096,
        cat.get("sizing.vcpus"): 0.3,
    })
    print("ready", child.pid, flush=True)
    time.sleep(300)
    """
)


def test_sigkill_then_recover_restores_tree_and_kills_child(tmp_path: Path, fake_root: SysRoot) -> None:
    before = tree_bytes(fake_root.root)
    journal = Journal(tmp_path / "journal.jsonl")
    script = tmp_path / "trial.py"
    script.write_text(SCRIPT)
    proc = subprocess.Popen(
        [PYTHON, str(script), str(fake_root.root), str(journal.path), REPO],
        stdout=subprocess.PIPE,
        text=True,
    )
    child_pid = None
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]  # stdout=PIPE: never None
        assert line.startswith("ready"), line
        child_pid = int(line.split()[1])
        assert process_ctime(child_pid) is not None
        assert tree_bytes(fake_root.root) != before
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

        rep = recover(journal, root=fake_root)
        assert rep.ok, rep
        assert rep.runs == ["killed-run"] and rep.skipped_live == []
        assert len(rep.restored) == 7
        assert child_pid in rep.killed
        assert rep.cgroups_removed == ["sys/fs/cgroup/cpu/novatune-k9"]
        deadline = time.monotonic() + 5
        while process_ctime(child_pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_ctime(child_pid) is None, "the run's child must be dead"
        assert tree_bytes(fake_root.root) == before
        # idempotent
        again = recover(journal, root=fake_root)
        assert again.runs == [] and again.restored == [] and again.killed == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if child_pid is not None and process_ctime(child_pid) is not None:
            os.kill(child_pid, signal.SIGKILL)


def test_recover_never_kills_a_reused_pid(journal: Journal, sleeper: subprocess.Popen[bytes]) -> None:
    ctime = process_ctime(sleeper.pid)
    assert ctime is not None
    journal.record_process("dead-run", sleeper.pid, ctime - 100.0)  # same pid, another process
    rec = journal.records()[0]
    rec["starttime"] -= 10_000  # ... that started before this one: the pid was reused
    # make the run look dead: its owner is a pid that does not exist
    lines = journal.path.read_text().splitlines()
    import json

    rec["owner_pid"], rec["owner_ctime"] = 2**22 + 1, 1.0
    lines[0] = json.dumps(rec)
    journal.path.write_text("\n".join(lines) + "\n")
    rep = recover(journal)
    assert rep.runs == ["dead-run"] and rep.killed == []
    assert sleeper.poll() is None
