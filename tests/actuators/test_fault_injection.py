"""Fault injection on the real machine: SIGKILL a process that changes knobs, at random moments.

A child process applies and restores knobs through ``ChangeSession`` in a
tight loop, on targets this test owns: a loop device it attaches
(``block.<loop>.scheduler``, ``block.<loop>.read_ahead_kb``) and a fresh
``WorkloadCgroup`` per cycle with a ``sleep`` inside (``sizing.vcpus``). The
test kills it with SIGKILL after a random 0-300 ms (seeded: a failure names
its iteration and reproduces), so kills land before, during and after an
apply, during a restore and during cgroup creation/removal. Then ``recover``
must leave each knob file byte-identical to before and the cgroup gone.

No global host knob (vm.*, thp.*) is touched: other tests may run meanwhile.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from actuators import Journal, SysRoot, recover
from actuators.journal import process_ctime
from tests.actuators.conftest import PYTHON, REPO

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changes a loop device and a cgroup: needs root")

ITERATIONS = 50
SEED = int(os.environ.get("NOVATUNE_FAULT_SEED", "20240603"))
MAX_DELAY_S = 0.300

CHILD = textwrap.dedent(
    """
    import ctypes, os, random, subprocess, sys
    journal_path, dev, repo, it = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    schedulers = sys.argv[5].split(",")  # what this device offers here, not what one machine had loaded
    sys.path.insert(0, repo)
    from actuators import Catalog, ChangeSession, Journal, KnobContext, SysRoot, WorkloadCgroup

    libc = ctypes.CDLL(None, use_errno=True)
    root, journal = SysRoot(), Journal(journal_path)
    me = os.getpid()
    rng = random.Random(it)
    run = f"fault-{it}"

    def join(procs):
        def pre():
            libc.prctl(1, 9)  # PR_SET_PDEATHSIG = SIGKILL: the sleep never outlives us
            if os.getppid() != me:
                os._exit(1)
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        return pre

    print("ready", flush=True)
    journal.begin(run)
    cycle = 0
    while True:
        cycle += 1
        cg = WorkloadCgroup.create(f"fault{it}-{os.getpid()}-{cycle}", journal=journal, run_id=run, root=root)
        sleeper = subprocess.Popen(["sleep", "120"], preexec_fn=join(str(cg.procs_file)))
        journal.record_process(run, sleeper.pid)
        cat = Catalog(root, KnobContext(cgroup=cg))
        with ChangeSession(journal, run_id=run, trial=cycle) as session:
            session.apply_many({
                cat.get(f"block.{dev}.scheduler"): rng.choice(schedulers),
                cat.get(f"block.{dev}.read_ahead_kb"): rng.choice([256, 512, 1024, 4096]),
                cat.get("sizing.vcpus"): rng.choice([0.2, 0.5, 1.0]),
            })
        sleeper.kill()
        sleeper.wait()
        journal.release_process(run, sleeper.pid)
        cg.remove()
    """
)

_QUEUE = ("queue/scheduler", "queue/read_ahead_kb")


def _read(dev: str) -> dict[str, bytes]:
    return {leaf: Path(f"/sys/block/{dev}/{leaf}").read_bytes() for leaf in _QUEUE}


def _schedulers(dev: str) -> list[str]:
    """The schedulers this kernel offers for ``dev`` (``[none] mq-deadline kyber`` -> the three words)."""
    return Path(f"/sys/block/{dev}/queue/scheduler").read_text().replace("[", "").replace("]", "").split()


def _put_back(dev: str, saved: dict[str, bytes]) -> None:
    sched = saved["queue/scheduler"].decode()
    word = sched[sched.index("[") + 1 : sched.index("]")] if "[" in sched else sched.strip()
    Path(f"/sys/block/{dev}/queue/scheduler").write_text(word)
    Path(f"/sys/block/{dev}/queue/read_ahead_kb").write_bytes(saved["queue/read_ahead_kb"])


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[str]:
    """A loop device attached to a 64 MiB file; its queue settings put back after detaching.

    The device is chosen by us (highest free index first, to stay clear of
    ``losetup -f`` users) and attached explicitly, so a concurrent attach makes
    ``losetup`` fail instead of sharing a device.
    """
    backing = tmp_path / "loop.img"
    subprocess.run(["truncate", "-s", "64M", str(backing)], check=True)
    candidates = sorted(
        (p.name for p in Path("/sys/block").iterdir() if p.name.startswith("loop") and p.name[4:].isdigit()),
        key=lambda n: -int(n[4:]),
    )
    for dev in candidates:
        if Path(f"/sys/block/{dev}/loop/backing_file").exists():
            continue
        saved = _read(dev)
        if subprocess.run(["losetup", f"/dev/{dev}", str(backing)], capture_output=True).returncode == 0:
            break
    else:
        pytest.skip("no free loop device")
    try:
        yield dev
    finally:
        subprocess.run(["losetup", "-d", f"/dev/{dev}"], check=False)
        for _ in range(50):  # detach is asynchronous
            if not Path(f"/sys/block/{dev}/loop/backing_file").exists():
                break
            time.sleep(0.05)
        _put_back(dev, saved)
        assert _read(dev) == saved


def _cgroups(it: int) -> list[str]:
    out = []
    for base in (Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")):
        if base.is_dir():
            out += [p.name for p in base.iterdir() if p.name.startswith(f"novatune-fault{it}-")]
    return out


def _sleepers(pid: int) -> list[int]:
    """Live (non-zombie) ``sleep 120`` processes whose recorded parent was ``pid``."""
    import psutil

    out = []
    for p in psutil.process_iter(["cmdline", "ppid", "status"]):
        if p.info["cmdline"] == ["sleep", "120"] and p.info["status"] != psutil.STATUS_ZOMBIE:
            try:
                env_parent = p.ppid()
            except psutil.Error:
                continue
            if env_parent == pid:
                out.append(p.pid)
    return out


@pytest.mark.slow
@pytest.mark.root
@needs_root
def test_sigkill_at_random_moments_then_recover(tmp_path: Path, loop_device: str) -> None:
    dev = loop_device
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    before = _read(dev)
    rng = random.Random(SEED)
    passes, failures = 0, []
    landed = {"before any change": 0, "with changes open": 0, "with nothing open": 0}
    started = time.monotonic()
    schedulers = _schedulers(dev)
    assert len(schedulers) >= 2, f"{dev} offers only {schedulers}: nothing to switch between"
    for it in range(ITERATIONS):
        delay = rng.uniform(0.0, MAX_DELAY_S)
        journal = Journal(tmp_path / f"journal-{it}.jsonl")
        child = subprocess.Popen(
            [PYTHON, str(script), str(journal.path), dev, REPO, str(it), ",".join(schedulers)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            line = child.stdout.readline()  # type: ignore[union-attr]  # stdout=PIPE: never None
            assert line.strip() == "ready", (line, child.stderr.read())  # type: ignore[union-attr]  # PIPE
            time.sleep(delay)
            if child.poll() is not None:  # it must still be cycling: the kill is what we test
                raise AssertionError(f"child exited early: {child.stderr.read()}")  # type: ignore[union-attr]  # PIPE
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=10)
        except BaseException:
            # a failure before the kill still leaves nothing behind: the child's cgroup, sleeper and knobs
            if child.poll() is None:
                child.kill()
                child.wait()
            recover(journal, root=SysRoot())
            raise
        rep = recover(journal, root=SysRoot())
        if not any(r.get("kind") == "knob" for r in journal.records()):
            landed["before any change"] += 1
        elif rep.knobs:
            landed["with changes open"] += 1
        else:
            landed["with nothing open"] += 1
        problems = []
        if not rep.ok:
            problems.append(f"recover failed: {rep.failed}")
        if rep.skipped_live:
            problems.append(f"runs still look alive: {rep.skipped_live}")
        if _read(dev) != before:
            problems.append(f"{dev} reads {_read(dev)} instead of {before}")
        if _cgroups(it):
            problems.append(f"cgroups left: {_cgroups(it)}")
        deadline = time.monotonic() + 3
        while _sleepers(child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _sleepers(child.pid):
            problems.append(f"sleep processes left: {_sleepers(child.pid)}")
        again = recover(journal, root=SysRoot())
        if again.knobs or again.runs:
            problems.append(f"recover is not idempotent: {again.as_dict()}")
        events = [r["event"] for r in journal.records() if r.get("kind") == "knob"]
        if problems:
            failures.append(f"iteration {it} (seed {SEED}, kill after {delay * 1000:.0f} ms, events {events}): "
                            + "; ".join(problems))
            _put_back(dev, before)  # keep later iterations meaningful
            for pid in _sleepers(child.pid):
                if process_ctime(pid) is not None:
                    os.kill(pid, signal.SIGKILL)
        else:
            passes += 1
    elapsed = time.monotonic() - started
    assert passes == ITERATIONS, f"{passes}/{ITERATIONS} passed in {elapsed:.0f} s ({landed}):\n" + "\n".join(failures)
    # the kills really landed at different moments (seeded, so this is stable)
    assert landed["with changes open"] >= 5 and landed["with nothing open"] >= 1, landed
    print(f"fault injection: {passes}/{ITERATIONS} in {elapsed:.0f} s; kills landed {landed}")


# --------------------------------------------------------------- fake tree
def _dead(journal: Journal) -> None:
    """Make every run of the journal look dead (its owner a pid that does not exist)."""
    import json

    recs = journal.records()
    for r in recs:
        r["owner_pid"], r["owner_ctime"] = 2**22 + 1, 1.0
    journal.path.write_text("".join(json.dumps(r) + "\n" for r in recs))


def test_recover_undoes_two_dead_runs_newest_first(fake_root: SysRoot, tmp_path: Path) -> None:
    """Run A changes swappiness 60->10 and dies; run B changes it 10->20 and dies: back to 60."""
    from actuators import Catalog, ChangeSession

    journal = Journal(tmp_path / "j.jsonl")
    knob = Catalog(fake_root).get("vm.swappiness")
    for run, value in (("A", 10), ("B", 20)):
        s = ChangeSession(journal, run_id=run, trial=0)
        s.apply(knob, value)
        s._stack.clear()  # the process "dies" without restoring
    _dead(journal)
    rep = recover(journal, root=fake_root)
    assert rep.ok and knob.read() == 60
    assert [(k["run"], k["outcome"]) for k in rep.knobs] == [("B", "restored"), ("A", "restored")]


def test_crash_between_intent_and_write_is_recovered(
    fake_root: SysRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actuators import Catalog, ChangeSession, session

    journal = Journal(tmp_path / "j.jsonl")
    knob = Catalog(fake_root).get("vm.swappiness")
    class Dies(BaseException):
        pass

    def commit(token):  # the process dies after the intent, before/while writing
        knob.root.write(token.target, token.new)
        raise Dies()

    def dies(intent, root):  # the process dies in the undo too
        raise Dies()

    knob.commit = commit  # type: ignore[method-assign]  # the fault injected
    monkeypatch.setattr(session, "restore_intent", dies)
    with pytest.raises(Dies):
        ChangeSession(journal, run_id="r", trial=0).apply(knob, 5)
    assert knob.read() == 5
    assert [r["event"] for r in journal.records()] == ["intent"]  # still open: nothing claimed restored
    _dead(journal)
    rep = recover(journal, root=fake_root)
    assert rep.ok and knob.read() == 60
    assert [k["outcome"] for k in rep.knobs] == ["restored"]


def test_restored_is_journaled_only_after_the_write(
    fake_root: SysRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actuators import Catalog, ChangeSession, session

    journal = Journal(tmp_path / "j.jsonl")
    knob = Catalog(fake_root).get("vm.swappiness")
    s = ChangeSession(journal, run_id="r", trial=0)
    s.apply(knob, 5)
    seen = []
    real = session.restore_intent

    def restore(intent, root):
        seen.append([r["event"] for r in journal.records()])
        return real(intent, root)

    monkeypatch.setattr(session, "restore_intent", restore)
    assert s.restore_all() == []
    assert seen == [["intent", "applied"]]
    assert [r["event"] for r in journal.records()] == ["intent", "applied", "restored"]


def test_restore_all_interrupted_still_restores_the_others(
    fake_root: SysRoot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actuators import Catalog, ChangeSession, session

    journal = Journal(tmp_path / "j.jsonl")
    cat = Catalog(fake_root)
    a, b = cat.get("vm.swappiness"), cat.get("thp.enabled")
    s = ChangeSession(journal, run_id="r", trial=0)
    s.apply(a, 5)
    s.apply(b, "never")

    real = session.restore_intent

    def interrupted(intent, root):
        if intent.knob == b.name:
            raise KeyboardInterrupt
        return real(intent, root)

    monkeypatch.setattr(session, "restore_intent", interrupted)
    with pytest.raises(KeyboardInterrupt):
        s.restore_all()
    assert a.read() == 60  # the other one was restored anyway
    assert [e["knob"] for e in Journal.open_entries(journal.records())] == ["thp.enabled"]
    _dead(journal)
    assert recover(journal, root=fake_root).ok and b.read() == "madvise"
