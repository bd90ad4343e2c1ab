"""Every agent of a fleet logs to one MLflow tracking server whose backend is PostgreSQL.

The test starts a PostgreSQL cluster (the studies' database and MLflow's), ``mlflow server`` on 127.0.0.1
with that backend and an artifact root of its own, and two agents on this machine with their own data and
lock directories. The study tunes each agent's own workload cgroup (``sizing.vcpus``), so the two cannot
collide and no host knob is touched. Each host gets a parent run in the study's experiment, each trial a
nested run under the parent of the host that ran it, with its series uploaded to the server's artifact root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import REPO, needs_root, novatune, snapshot
from tests.integration.test_mlflow_remote import STARTUP_S, _free_port

pytestmark = [pytest.mark.slow, needs_root,
              pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed"),
              pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                                 reason="PostgreSQL not installed (.ci/run installs it)")]


def _mlflow_server(backend: str, artifacts: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", backend, "--serve-artifacts", "--artifacts-destination", str(artifacts)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=log.parent, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"mlflow server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        time.sleep(0.5)
    os.killpg(proc.pid, 9)
    raise AssertionError(f"mlflow server not healthy after {STARTUP_S} s:\n{log.read_text()}")


def test_every_agent_logs_its_host_and_its_trials_to_one_mlflow_server_on_postgresql(tmp_path: Path) -> None:
    import optuna
    from mlflow import MlflowClient

    from benchmarks.pgcluster import PgCluster

    before = snapshot()
    with PgCluster() as pg:
        pg._sql("CREATE DATABASE mlflow OWNER novatune")
        backend = pg.url.rsplit("/", 1)[0] + "/mlflow"
        server, url = _mlflow_server(backend, tmp_path / "artifacts", tmp_path / "mlflow-server.log")
        agents: list[subprocess.Popen[bytes]] = []
        try:
            spec = {"name": "fleet-ml", "workload": {"kind": "stress-ng", "stressor": "cpu", "workers": 1},
                    "knobs": {"sizing.vcpus": {"low": 0.2, "high": 1.0}}, "objectives": {"throughput": "maximize"},
                    "trial": {"warmup_s": 0, "measure_s": 1.0, "repeats": 1}, "budget": {"trials": 4},
                    "sampler": {"name": "random", "seed": 3}}
            (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
            (tmp_path / "submitter").mkdir(mode=0o700)
            novatune("--storage", pg.url, "fleet", "submit", str(tmp_path / "spec.yaml"), "--name", "fleet-ml",
                     home=tmp_path / "submitter", check=True)
            for host in ("m0", "m1"):
                home = tmp_path / host
                home.mkdir(mode=0o700)
                env = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_LOCK_DIR": str(home / "locks"),
                       "NOVATUNE_MLFLOW_TRACKING_URI": url}
                with open(home / "agent.log", "wb") as log:
                    agents.append(subprocess.Popen(
                        [sys.executable, "-m", "experiments", "--storage", pg.url, "agent", "--host-id", host,
                         "--heartbeat-s", "1", "--grace-s", "10", "--poll-s", "0.3", "--exit-when-idle"],
                        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT))
            for a, host in zip(agents, ("m0", "m1")):
                assert a.wait(timeout=300) == 0, (tmp_path / host / "agent.log").read_text()
            trials = optuna.load_study(study_name="fleet-ml", storage=pg.url).trials
            assert [t.state.name for t in trials] == ["COMPLETE"] * 4
            client = MlflowClient(url)
            exp = client.get_experiment_by_name("novatune/fleet-ml")
            assert exp is not None
            runs = client.search_runs([exp.experiment_id], max_results=100)
            parents = {r.data.tags["novatune.host"]: r for r in runs if r.data.tags.get("novatune.kind") == "study"}
            ran_on = {t.user_attrs["host"] for t in trials}
            assert ran_on <= set(parents) <= {"m0", "m1"}  # one parent run per host that took part
            assert all(p.info.status == "FINISHED" for p in parents.values())
            children = [r for r in runs if r.data.tags.get("novatune.kind") == "trial"]
            assert len(children) == 4
            for t in trials:  # each trial under the parent of the host that ran it
                [child] = [r for r in children if r.data.tags["trial"] == str(t.number)]
                assert child.data.tags["mlflow.parentRunId"] == parents[t.user_attrs["host"]].info.run_id
                assert child.data.metrics["throughput"] == pytest.approx(t.values[0])
            stored = list((tmp_path / "artifacts").rglob("trial-*-series.csv"))
            assert len(stored) == 4, stored  # uploaded through the server, not left on the hosts
        finally:
            for a in agents:
                if a.poll() is None:
                    a.kill()
                    a.wait(timeout=30)
            os.killpg(server.pid, 15)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, 9)
                server.wait(timeout=5)
    assert snapshot() == before
