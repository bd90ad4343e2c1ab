"""Studies whose workload is not the built-in OLTP service: a passive target, and the real tools.

Each runs a real study of two short trials through the CLI, then checks that
the machine reads as before (kernel files, cgroups, the observed process's
own settings) and that the workload's own metrics reached the trials.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from collectors.workloads.tools.adapter import DEBIAN_PACKAGES
from tests.integration.conftest import REPO, needs_root, novatune, snapshot

pytestmark = [pytest.mark.slow, needs_root]


def _allow_python(home: Path) -> None:
    """The operator's part of a passive study: name the target in the configuration. The processes these
    tests observe run this interpreter, so its executable is the allowed target (novatune's own processes
    run it too, and are never targets whatever the list says)."""
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = home / "config.yaml"
    config.write_text(yaml.safe_dump({"allowed_targets": [f"exe:{os.path.realpath(sys.executable)}"]}))
    config.chmod(0o600)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_passive_study_tunes_a_running_service_and_leaves_it_running(tmp_path: Path, home: Path) -> None:
    port = _free_port()
    (tmp_path / "index.html").write_text("hello\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not listen"
                time.sleep(0.1)
        affinity, nice = os.sched_getaffinity(server.pid), os.getpriority(os.PRIO_PROCESS, server.pid)
        spec = {
            "name": "passive-http",
            "workload": {"kind": "passive", "pids": [server.pid], "probe_url": f"http://127.0.0.1:{port}/index.html",
                         "probe_interval_s": 0.01},
            "knobs": {"affinity.cpus": {"low": 1, "high": 2}, "sched.nice": {"low": -5, "high": 10},
                      "sizing.vcpus": {"low": 0.5, "high": 2.0}},
            "objectives": {"latency_p95_ms": "minimize", "cost_usd_per_hour": "minimize"},
            "constraints": {"probe_error_rate": {"max": 0.01}},
            "trial": {"warmup_s": 0.2, "measure_s": 1.5},
            "budget": {"trials": 2},
            "sampler": {"name": "random", "seed": 1},
        }
        path = tmp_path / "passive.yaml"
        path.write_text(yaml.safe_dump(spec))
        _allow_python(home)
        before = snapshot()
        proc = novatune("study", "run", str(path), home=home, timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert snapshot() == before
        # observed, never owned: still running, its own settings as found
        assert server.poll() is None
        assert os.sched_getaffinity(server.pid) == affinity
        assert os.getpriority(os.PRIO_PROCESS, server.pid) == nice
        assert "skipped sizing.vcpus: passive workload" in " ".join(proc.stderr.split())  # with the reason
        shown = json.loads(novatune("study", "show", "passive-http", "--json", home=home, check=True).stdout)
        assert [t["state"] for t in shown["trials"]] == ["complete", "complete"]
        for t in shown["trials"]:
            assert 0 < t["values"]["latency_p95_ms"] < 1000
    finally:
        server.terminate()
        server.wait(timeout=10)


def _running_trial(home: Path, name: str) -> bool:
    """Read-only look into the study store: never initialise its schema beside the running study."""
    import sqlite3

    db = home / "optuna.db"
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            row = con.execute(
                "select count(*) from trials t join studies s on s.study_id = t.study_id "
                "where s.study_name = ? and t.state = 'RUNNING'", (name,)).fetchone()
    except sqlite3.Error:
        return False  # the schema is still being created
    return bool(row and row[0])


def test_passive_study_of_a_vanishing_process_fails_the_trial_with_the_reason(tmp_path: Path, home: Path) -> None:
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        spec = {
            "name": "passive-gone",
            "workload": {"kind": "passive", "pids": [victim.pid]},
            "knobs": {"affinity.cpus": {"low": 1, "high": 2}},
            "objectives": {"target_cpu_pct": "minimize"},
            "trial": {"warmup_s": 0.1, "measure_s": 30},
            "budget": {"trials": 1},
        }
        path = tmp_path / "gone.yaml"
        path.write_text(yaml.safe_dump(spec))
        _allow_python(home)
        study = subprocess.Popen([sys.executable, "-m", "experiments", "study", "run", str(path)], cwd=REPO,
                                 env={**os.environ, "NOVATUNE_HOME": str(home)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not _running_trial(home, "passive-gone"):  # trial 0 is measuring
            assert study.poll() is None and time.monotonic() < deadline, study.communicate()
            time.sleep(0.3)
        time.sleep(1.5)
        victim.kill()  # the observed process goes away in the middle of the window
        victim.wait()
        out, errs = study.communicate(timeout=90)
        assert "Traceback" not in out + errs
        shown = json.loads(novatune("study", "show", "passive-gone", "--json", home=home, check=True).stdout)
        (trial,) = shown["trials"]
        assert trial["state"] == "fail"
        assert str(victim.pid) in trial["reason"] and ("exited" in trial["reason"] or "vanish" in trial["reason"])
    finally:
        victim.kill()
        victim.wait()


def test_a_metric_the_workload_does_not_report_is_refused_before_anything_runs(tmp_path: Path, home: Path) -> None:
    spec = {
        "name": "bad-metric",
        "workload": {"kind": "iperf3"},
        "knobs": {"affinity.cpus": {"low": 1, "high": 2}},
        "objectives": {"latency_p95_ms": "minimize"},
    }
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = novatune("study", "run", str(path), home=home, timeout=60)
    assert proc.returncode == 2
    assert "objectives.latency_p95_ms: unknown metric; allowed: throughput" in proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (home / "optuna.db").exists() or "bad-metric" not in novatune("study", "list", home=home).stdout


def test_a_workload_that_cannot_start_is_a_clear_error_and_nothing_is_stored(tmp_path: Path, home: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    spec = {
        "name": "passive-dead",
        "workload": {"kind": "passive", "pids": [dead.pid]},
        "knobs": {"affinity.cpus": {"low": 1, "high": 2}},
        "objectives": {"target_cpu_pct": "minimize"},
    }
    path = tmp_path / "dead.yaml"
    path.write_text(yaml.safe_dump(spec))
    proc = novatune("study", "run", str(path), home=home, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    msg = " ".join(proc.stderr.split())
    assert "the passive workload could not start" in msg and str(dead.pid) in msg
    assert "Traceback" not in proc.stdout + proc.stderr and "internal error" not in msg


#: the servers' private directories under the system temp directory (pgbench's cluster, redis, iperf3, wrk)
PRIVATE = ("novatune-pg-*", "novatune-redis-benchmark-*", "novatune-iperf3-*", "novatune-wrk-*")


def _private_dirs() -> set[Path]:
    return {p for g in PRIVATE for p in Path(tempfile.gettempdir()).glob(g)}


def _leftovers(home: Path, before: set[Path]) -> list[str]:
    """Processes a study started and left behind: they run in its data dir, or in a server's private
    directory that did not exist before the study (a concurrent test's own servers are not ours)."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "cmdline", "cwd"]):
        text = " ".join(p.info["cmdline"] or []) + " " + (p.info["cwd"] or "")
        mine = any(g.rstrip("*") in text for g in PRIVATE) and not any(str(d) in text for d in before)
        if str(home) in text or mine:
            out.append(f"{p.info['pid']}: {text}")
    return out


@pytest.mark.parametrize("example", ["fio", "pgbench", "redis-benchmark", "wrk", "iperf3", "stress-ng",
                                     "scenario-pgbench", "scenario-redis"])
def test_example_spec_runs_as_a_real_study(example: str, home: Path) -> None:
    """Every example spec in experiments/specs/ is a study that runs: the tool and its server for real (the
    database scenario specs of the gain report too)."""
    tool = example.removeprefix("scenario-").replace("redis", "redis-benchmark").replace(
        "redis-benchmark-benchmark", "redis-benchmark")
    for binary in {"redis-benchmark": ["redis-server", "redis-benchmark"], "pgbench": ["pgbench", "initdb"]}.get(
            tool, [tool]):
        if shutil.which(binary) is None and not list(Path("/usr/lib/postgresql").glob(f"*/bin/{binary}")):
            pytest.skip(f"{binary} not installed (Debian package: {DEBIAN_PACKAGES.get(binary, '?')})")
    spec = REPO / "experiments" / "specs" / f"{example}.yaml"
    before = snapshot()
    clusters = _private_dirs()
    proc = novatune("study", "run", str(spec), "--trials", "2", home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before, "a knob or cgroup was left changed"
    assert _leftovers(home, clusters) == []
    assert _private_dirs() <= clusters  # the servers' directories deleted (another test's may go meanwhile)
    name = yaml.safe_load(spec.read_text())["name"]
    shown = json.loads(novatune("study", "show", name, "--json", home=home, check=True).stdout)
    assert [t["state"] for t in shown["trials"]] == ["complete", "complete"], shown["trials"]
    for t in shown["trials"]:
        assert t["values"]["throughput"] > 0
