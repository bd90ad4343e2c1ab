"""The Tracker against a real ``mlflow server`` on 127.0.0.1 (REST API, proxied artifacts).

The server runs from a temporary SQLite store and artifact folder, one worker, and is
stopped in a ``finally``. Nothing on the machine changes.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from experiments.study.tracking import Tracker

STARTUP_S = 90  # a cold start (imports, store migration) took 36 s on a busy 2-core VM


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tmp_path):
    port = _free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'm.db'}",
        "--serve-artifacts", "--artifacts-destination", str(tmp_path / "art"),
    ]
    with open(tmp_path / "server.log", "w") as log:
        proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"mlflow server exited with {proc.returncode}:\n{(tmp_path / 'server.log').read_text()}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow server not healthy after {STARTUP_S} s:\n{(tmp_path / 'server.log').read_text()}")
            time.sleep(0.5)
        yield url, tmp_path / "art"
    finally:
        if proc.poll() is None:  # the server and its workers: the process group it leads
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)


@pytest.mark.slow
def test_tracker_on_a_remote_server(server, tmp_path):
    import mlflow

    url, art = server
    local_root = tmp_path / "local-artifacts"
    tracker = Tracker(url, artifact_root=local_root)  # as the runner passes it: ignored for a server
    parent = tracker.start_study("remote", description="remote test", tags={"novatune.study": "remote"})

    series = tmp_path / "trial-000-series.csv"
    series.write_text("time,a\n0,1\n")
    trial = tracker.log_trial(0, params={"vm.swappiness": 10, "thp.enabled": "never"},
                              metrics={"throughput_rps": 100.0, "throughput_rps_ci_low": 95.0},
                              tags={"state": "complete"}, artifacts=[series])
    export_dir = tmp_path / "export" / "sysctl"
    export_dir.mkdir(parents=True)
    (export_dir / "90-novatune.conf").write_text("vm.swappiness = 10\n")
    png = tmp_path / "pareto_front.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n")
    tracker.finish_study(metrics={"hypervolume": 2.0}, step_metrics={"hypervolume_per_trial": [1.0, 2.0]},
                         artifacts=[png, (tmp_path / "export", "export")], tags={"state": "completed"})

    client = mlflow.MlflowClient(tracking_uri=url)  # read back over HTTP
    exp = client.get_experiment_by_name("novatune/remote")
    assert exp.tags["mlflow.note.content"] == "remote test"
    assert not exp.artifact_location.startswith("file:")  # the server's store, not a path on this host
    assert not local_root.exists()
    runs = {r.info.run_id: r for r in client.search_runs([exp.experiment_id])}
    assert set(runs) == {parent, trial}
    assert runs[parent].info.status == "FINISHED" and runs[parent].data.metrics["hypervolume"] == 2.0
    t = runs[trial]
    assert t.data.tags["mlflow.parentRunId"] == parent
    assert t.data.params == {"vm.swappiness": "10", "thp.enabled": "never"}
    assert t.data.metrics == {"throughput_rps": 100.0, "throughput_rps_ci_low": 95.0}
    assert [a.path for a in client.list_artifacts(trial)] == ["trial-000-series.csv"]
    assert {a.path for a in client.list_artifacts(parent)} == {"pareto_front.png", "export"}
    assert [a.path for a in client.list_artifacts(parent, "export/sysctl")] == ["export/sysctl/90-novatune.conf"]
    got = client.download_artifacts(parent, "export/sysctl/90-novatune.conf", str(tmp_path / "dl"))
    assert Path(got).read_text() == "vm.swappiness = 10\n"
    assert any(p.name == "90-novatune.conf" for p in art.rglob("*"))  # stored by the server
    assert len(client.get_metric_history(parent, "hypervolume_per_trial")) == 2

    # a new process resumes the study on the same server
    again = Tracker(url)
    assert again.resume_study("remote", tags={}) is True and again.parent_run_id == parent
    assert client.get_run(parent).info.status == "RUNNING"
    again.finish_study(metrics={}, step_metrics={}, artifacts=[], tags={}, status="KILLED")
    assert client.get_run(parent).info.status == "KILLED"
