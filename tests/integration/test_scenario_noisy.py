"""Scheduling scenario (issue 17): the OLTP service next to a stress-ng neighbour the study owns.

Runs ``experiments/specs/scenario-noisy-neighbour.yaml`` for real through the CLI: the knobs must change the
neighbour (its stress-ng tasks and its cgroup, read from /proc and /sys while the study runs), never the
service, and everything the study made must be gone afterwards; a kill -9 mid-trial is cleaned by recover.
"""

import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import REPO, needs_root, novatune, snapshot
from tests.integration.test_crash_recovery import _wait_mid_trial

pytestmark = [needs_root, pytest.mark.slow]

SPEC = REPO / "experiments" / "specs" / "scenario-noisy-neighbour.yaml"
CPU_CGROUPS = Path("/sys/fs/cgroup/cpu")
POLICIES = {os.SCHED_OTHER: "other", os.SCHED_BATCH: "batch", os.SCHED_IDLE: "idle"}


def _run(home: Path, name: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "experiments", "study", "run", str(SPEC), "--name", name, *args],
        cwd=REPO, env={**os.environ, "NOVATUNE_HOME": str(home)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _ours(home: Path) -> list[psutil.Process]:
    """The processes of the study under ``home`` (their command lines name its data directory)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if str(home) in " ".join(p.info["cmdline"] or []):
            out.append(p)
    return out


def _neighbour_cgroups(name: str) -> list[Path]:
    return [d for d in CPU_CGROUPS.glob(f"novatune-{name}-*-nb") if d.is_dir()]


def _state(name: str) -> dict[str, str]:
    """The host knobs the catalog covers and the study's own cgroups in every hierarchy (the machine is
    shared: other studies' cgroups come and go meanwhile)."""
    out = {k: v for k, v in snapshot().items() if not k.startswith("cgroups:")}
    out["cgroups"] = " ".join(sorted(str(d) for d in Path("/sys/fs/cgroup").glob(f"*/novatune-{name}-*")))
    return out


class Observer(threading.Thread):
    """Polls, while the study runs, the neighbour's cgroup (cpu.shares) and its stress-ng tasks (policy, nice,
    CPUs allowed), and the service's processes (policy, nice)."""

    def __init__(self, home: Path, name: str) -> None:
        super().__init__(daemon=True)
        self.home, self.name = home, name
        self.stop = threading.Event()
        self.neighbour: set[tuple[str, int, int]] = set()  # (policy, nice, number of CPUs allowed)
        self.shares: set[int] = set()
        self.service: set[tuple[str, int]] = set()

    def run(self) -> None:
        deadline = time.monotonic() + 200  # bounded, whatever happens to the study
        while not self.stop.is_set() and time.monotonic() < deadline:
            for cg in _neighbour_cgroups(self.name):
                try:
                    self.shares.add(int((cg / "cpu.shares").read_text()))
                    pids = [int(t) for t in (cg / "tasks").read_text().split()]
                except (OSError, ValueError):
                    continue
                for pid in pids:
                    try:
                        if Path(f"/proc/{pid}/comm").read_text().strip() != "stress-ng":
                            continue
                        self.neighbour.add((POLICIES.get(os.sched_getscheduler(pid), "?"),
                                            os.getpriority(os.PRIO_PROCESS, pid), len(os.sched_getaffinity(pid))))
                    except OSError:
                        pass
            for p in _ours(self.home):
                try:
                    if "oltp_server" in " ".join(p.cmdline()):
                        self.service.add((POLICIES.get(os.sched_getscheduler(p.pid), "?"), p.nice()))
                except (OSError, psutil.Error):
                    pass
            time.sleep(0.1)


def test_noisy_neighbour_study_tunes_the_neighbour_not_the_service_and_leaves_nothing(home):
    name = "nbt"
    before = _state(name)
    proc = _run(home, name, "--trials", "2")
    watch = Observer(home, name)
    watch.start()
    try:
        out, err = proc.communicate(timeout=150)
    finally:
        watch.stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
            novatune("recover", home=home)  # what the killed study made must not outlive the test
    watch.join(timeout=10)
    assert proc.returncode == 0, out + err

    shown = json.loads(novatune("study", "show", name, "--json", home=home, check=True).stdout)
    trials = shown["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"]
    for t in trials:
        p99, ops = t["values"]["latency_p99_ms"], t["values"]["neighbour_bogo_ops_per_s"]
        assert math.isfinite(p99) and 0 < p99 < 5000, t
        assert math.isfinite(ops) and ops > 10, t  # the batch job really ran in the window
    base, tuned = trials[0]["knobs"], trials[1]["knobs"]
    assert base == {"sched.policy": "other", "sched.nice": 0, "affinity.cpus": 2, "sizing.cpu_weight": 100}
    assert tuned != base
    # the neighbour's stress-ng tasks ran with each trial's settings, its cgroup had each trial's weight
    for knobs in (base, tuned):
        assert (knobs["sched.policy"], knobs["sched.nice"], knobs["affinity.cpus"]) in watch.neighbour, \
            (knobs, watch.neighbour)
        assert max(2, round(knobs["sizing.cpu_weight"] * 1024 / 100)) in watch.shares, (knobs, watch.shares)
    # ... and the service never moved: the knobs act on the target, not on the workload
    assert watch.service == {("other", 0)}, watch.service

    assert _state(name) == before, "a knob or a cgroup was left changed"
    assert not _neighbour_cgroups(name)
    assert not _ours(home), "a process of the study survived it"
    again = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
    assert again["killed"] == [] and again["restored"] == [] and again["cgroups_removed"] == [], again


def _processes(cgroups: list[Path]) -> list[psutil.Process]:
    """The processes in ``cgroups`` now (a task that exits or a cgroup removed meanwhile is skipped)."""
    found = []
    for cg in cgroups:
        try:
            pids = (cg / "tasks").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                found.append(psutil.Process(int(pid)))
            except psutil.NoSuchProcess:
                pass
    return found


def test_noisy_neighbour_kill_9_mid_trial_then_recover(home):
    name = f"nbcrash{os.getpid()}"
    before = _state(name)
    proc = _run(home, name, "--trials", "3")
    recovered = False
    try:
        _wait_mid_trial(home, proc, trial=1, knobs=3)  # seed 7's trial 1 keeps affinity.cpus at 2
        deadline = time.monotonic() + 10  # the window's stress-ng run (warm-up, then measure) is on its way
        while True:  # tasks come and go between the two reads: look again until both are seen at once
            running = [p for p in _ours(home) if p.name() == "stress-ng"]
            made = _processes(_neighbour_cgroups(name))
            if (running and len(made) > len(running)) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert running, "no stress-ng neighbour ran mid-trial: the test would prove nothing"
        assert len(made) > len(running), made  # the holder and the window's stress-ng tasks
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        time.sleep(0.5)
        assert _neighbour_cgroups(name), "the killed study's cgroup is gone before recover: nothing to prove"

        report = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
        recovered = True
        assert report["failed"] == [], report
        assert any(c.endswith("-nb") for c in report["cgroups_removed"]), report
        assert not _neighbour_cgroups(name)
        deadline = time.monotonic() + 15
        while _ours(home) or any(p.is_running() for p in made):
            assert time.monotonic() < deadline, f"processes of the killed study survived recover: {_ours(home)}, {made}"
            time.sleep(0.2)
        assert _state(name) == before
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if not recovered:  # a failed assertion must not leave the killed study's cgroup and holder behind
            novatune("recover", home=home)
