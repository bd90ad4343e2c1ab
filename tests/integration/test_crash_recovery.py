"""kill -9 in the middle of a trial, then `novatune recover`; SIGTERM restores by itself."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import yaml

from tests.integration.conftest import REPO, needs_root, novatune, snapshot
from tests.integration.test_end_to_end import SPEC

pytestmark = [needs_root, pytest.mark.slow]


def _start(tmp_path, home, name):
    spec = {**SPEC, "name": name, "trial": {"warmup_s": 1.0, "measure_s": 20.0, "repeats": 1},
            "budget": {"trials": 3, "timeout_s": 200}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "NOVATUNE_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "experiments", "study", "run", str(path)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait_mid_trial(home, proc, *, trial: int, timeout: float = 150, knobs: int = 4) -> None:
    """Until the journal shows trial `trial`'s knobs applied (the workload is then measuring)."""
    journal = home / "journal.jsonl"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        if journal.exists():
            recs = [json.loads(line) for line in journal.read_text().splitlines() if line.strip().endswith("}")]
            applied = [r for r in recs if r.get("event") == "applied" and r.get("trial") == trial]
            if len(applied) >= knobs:  # the trial's knobs applied: we are in the measurement window
                time.sleep(1.0)
                return
        time.sleep(0.2)
    raise AssertionError("the study never reached the middle of a trial")


def _workload_processes(home):
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if str(home) in cmd:
            out.append(p)
    return out


def test_kill_9_mid_trial_then_recover(tmp_path, home):
    before = snapshot()
    proc = _start(tmp_path, home, "crash")
    try:
        _wait_mid_trial(home, proc, trial=1)
        changed = {k for k, v in snapshot().items() if before.get(k) != v}
        assert changed, "trial 1 changed nothing: the test would prove nothing"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    assert snapshot() != before  # the crash really left the machine changed

    rec = novatune("recover", "--json", home=home, check=True)
    report = json.loads(rec.stdout)
    assert report["failed"] == [] and report["restored"], report
    assert snapshot() == before, "recover did not put every setting back"
    assert not _workload_processes(home), "processes of the killed run survived recover"
    again = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
    assert again["restored"] == [] and again["killed"] == []  # idempotent


def test_sigterm_mid_trial_restores_without_recover(tmp_path, home):
    before = snapshot()
    proc = _start(tmp_path, home, "term")
    try:
        _wait_mid_trial(home, proc, trial=1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert snapshot() == before
    assert not _workload_processes(home)
    shown = json.loads(novatune("study", "show", "term", "--json", home=home, check=True).stdout)
    assert shown["state"] == "interrupted"
    t1 = shown["trials"][1]
    assert t1["state"] == "fail" and t1["reason"] == "interrupted"


def test_kill_9_of_a_pgbench_study_then_recover_leaves_no_server_and_no_cluster(tmp_path, home):
    """A tool workload's server and its scratch cluster (under /tmp) are journaled: recover removes both."""
    import shutil
    import tempfile
    from pathlib import Path

    if shutil.which("pgbench") is None or not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        pytest.skip("pgbench/initdb not installed (Debian packages: postgresql-contrib, postgresql)")
    spec = yaml.safe_load((REPO / "experiments/specs/pgbench.yaml").read_text())
    spec.update(name="crash-pg", trial={"warmup_s": 1, "measure_s": 20}, budget={"trials": 3})
    path = tmp_path / "crash-pg.yaml"
    path.write_text(yaml.safe_dump(spec))
    before = snapshot()
    clusters_before = set(Path(tempfile.gettempdir()).glob("novatune-pg-*"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "experiments", "study", "run", str(path)], cwd=REPO,
        env={**os.environ, "NOVATUNE_HOME": str(home)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_mid_trial(home, proc, trial=1, knobs=len(spec["knobs"]))
        clusters = set(Path(tempfile.gettempdir()).glob("novatune-pg-*")) - clusters_before
        assert len(clusters) == 1, clusters
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(0.5)
    report = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
    assert report["failed"] == [], report
    assert report["scratch_removed"] == [str(c) for c in clusters]
    assert not any(c.exists() for c in clusters)
    assert snapshot() == before
    deadline = time.monotonic() + 15
    while any("novatune-pg-" in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])):
        assert time.monotonic() < deadline, "a postgres of the killed run survived recover"
        time.sleep(0.2)
