"""The HTTP API with real background studies on this machine.

The app is the real one (TestClient, lifespan and all); POST /studies starts a
real worker process that tunes real knobs (journaled, restored) with a real
workload on 127.0.0.1, real Optuna and MLflow stores in a temporary data
directory. The service-restart test runs ``novatune serve`` as a process and
kills it (and the study's worker) with SIGKILL in the middle of a trial.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx  # the dev extra declares httpx2 (starlette 1.x test client); same API
import optuna
import pytest
from fastapi.testclient import TestClient

from experiments.service import create_app
from experiments.settings import Paths, Settings
from tests.integration.conftest import REPO, needs_root, snapshot

#: the Host the test client sends: the guard answers loopback names only (its default 'testserver' is 400)
LOCAL = "http://127.0.0.1"

pytestmark = [needs_root, pytest.mark.slow]

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def spec(name: str, trials: int = 3, measure_s: float = 1.0, knobs: dict | None = None) -> dict:
    return {
        "name": name,
        "description": "API integration test",
        "workload": {"kind": "oltp", "workers": 2, "clients": 4},
        "knobs": knobs or {"sizing.vcpus": {"low": 0.3, "high": 2.0},
                           "vm.vfs_cache_pressure": {"low": 50, "high": 200}},
        "objectives": {"throughput_rps": "maximize", "cost_usd_per_hour": "minimize"},
        "trial": {"warmup_s": 0.5, "measure_s": measure_s, "repeats": 1},
        "budget": {"trials": trials, "timeout_s": 300},
        "sampler": {"name": "random", "seed": 7},
    }


def _our_child(pid: int) -> bool:
    """Whether ``pid`` is still a child of this process: running, or a zombie nobody waited for."""
    try:
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)  # looks, does not reap
    except ChildProcessError:
        return False
    return True


def wait_for(get, pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = get()
        if pred(last):
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}; last: {last}")


@pytest.fixture()
def client(home):
    app = create_app(Paths(home), Settings(api_token=TOKEN))
    with TestClient(app, base_url=LOCAL) as c:
        yield c


def test_a_background_study_from_post_to_export_and_delete(client, tmp_path):
    before = snapshot()
    body = spec("api-life")
    assert client.post("/studies", json=body).status_code == 401  # writes need the token
    assert client.post("/studies", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401

    bad = client.post("/studies", json={**body, "knobs": {"vm.nope": {"low": 1, "high": 2}}}, headers=AUTH)
    assert bad.status_code == 422 and any("vm.nope" in p for p in bad.json()["problems"]), bad.text
    assert client.post("/studies", json={**body, "objectives": "fast"}, headers=AUTH).status_code == 422

    r = client.post("/studies", json=body, headers=AUTH)
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    assert name == "api-life" and r.json()["state"] in ("starting", "running")

    # the same host knob in a second study: refused while the first runs; its workload-bound knob alone is fine
    clash = client.post("/studies", json={**body, "name": "api-clash"}, headers=AUTH)
    assert clash.status_code == 409 and "vm.vfs_cache_pressure" in clash.json()["detail"], clash.text

    progress = []

    def get():
        s = client.get(f"/studies/{name}").json()
        if s["state"] == "running":
            progress.append(s["trials_done"])
        return s

    final = wait_for(get, lambda s: s["state"] in ("completed", "failed", "stopped"), 180, "the study to end")
    assert final["state"] == "completed", final
    assert final["trials_done"] == final["trials_total"] == 3
    worker = r.json()["pid"]  # the service waits for its finished worker: no zombie until the service exits
    wait_for(lambda: _our_child(worker), lambda child: not child, 10, f"worker {worker} to be reaped")
    assert set(final["best"]) == {"throughput_rps", "cost_usd_per_hour"}
    lead = final["leader"]  # one trial, all its objectives: never a mix of two trials' bests
    rows = {r["trial"]: r for r in client.get(f"/studies/{name}/trials").json()}
    assert lead["values"] == rows[lead["trial"]]["values"] and rows[lead["trial"]]["pareto"]
    assert final["choice"]["trial"] is not None and final["convergence"]["history"]
    assert progress, "never saw the study running"
    assert progress == sorted(progress), progress  # progress never goes back
    assert snapshot() == before  # every tuned knob reads as before

    listing = client.get("/studies").json()
    assert [s["name"] for s in listing] == [name]
    trials = client.get(f"/studies/{name}/trials").json()
    assert [t["state"] for t in trials] == ["complete"] * 3
    pareto = client.get(f"/studies/{name}/pareto").json()
    assert pareto["choice"]["trial"] in {t["trial"] for t in pareto["front"]}
    for fmt in ("json", "yaml", "sysctl", "tuned", "systemd", "shell"):
        e = client.get(f"/studies/{name}/export", params={"format": fmt})
        assert e.status_code == 200 and e.text.strip(), (fmt, e.text)
    assert json.loads(client.get(f"/studies/{name}/export").text)["format"] == "novatune.config/v1"
    assert client.get(f"/studies/{name}/export", params={"format": "docx"}).status_code == 422
    assert client.get(f"/studies/{name}/export", params={"trial": 99}).status_code == 404
    conv = client.get("/tuning/convergence", params={"study": name}).json()
    assert conv[0]["stop_reason"] == "budget of 3 trials used"

    # MLflow: one experiment for the study, its parent run and a nested run per trial
    import mlflow

    paths = client.app.state.paths
    ml = mlflow.MlflowClient(tracking_uri=paths.mlflow_uri)
    exp = ml.get_experiment_by_name(f"novatune/{name}")
    assert exp is not None and exp.tags.get("mlflow.note.content") == "API integration test"
    runs = ml.search_runs([exp.experiment_id])
    kinds = sorted(r.data.tags.get("novatune.kind") for r in runs)
    assert kinds == ["study", "trial", "trial", "trial"]

    assert client.post(f"/studies/{name}/stop", headers=AUTH).status_code == 409  # not running
    assert client.delete(f"/studies/{name}").status_code == 401
    d = client.delete(f"/studies/{name}", headers=AUTH)
    assert d.status_code == 200 and d.json()["deleted"] is True
    assert client.get(f"/studies/{name}").status_code == 404
    assert client.delete(f"/studies/{name}", headers=AUTH).status_code == 404


def test_stop_restores_the_knobs_then_says_stopped(client):
    before = snapshot()
    r = client.post("/studies", json=spec("api-stop", trials=30, measure_s=2.0), headers=AUTH)
    assert r.status_code == 201, r.text
    name = r.json()["name"]
    wait_for(lambda: client.get(f"/studies/{name}").json(),
             lambda s: s["trials_done"] >= 1 and s["running_trial"] is not None, 120, "a trial in progress")
    time.sleep(1.0)  # inside the trial's measurement: its knobs are applied now
    s = client.post(f"/studies/{name}/stop", headers=AUTH)
    assert s.status_code == 200, s.text
    assert s.json()["state"] == "stopped"
    assert snapshot() == before
    trials = client.get(f"/studies/{name}/trials").json()
    assert trials[-1]["state"] == "fail" and trials[-1]["reason"] == "interrupted"
    assert all(t["state"] == "complete" for t in trials[:-1])
    assert len(trials) < 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_API_TOKEN": TOKEN}
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "serve", "--port", str(port)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: _health(base), bool, 60, "the service to answer")
    return proc


def _health(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_a_study_survives_a_crash_of_the_service(home):
    """kill -9 of the service and the study's worker mid-trial; at the next start the trial is failed,
    its knobs restored, and the study carries on to its budget."""
    before = snapshot()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    knobs = {"vm.dirty_expire_centisecs": {"low": 1000, "high": 6000}, "sizing.vcpus": {"low": 0.3, "high": 2.0}}
    proc = serve(home, port)
    try:
        r = httpx.post(base + "/studies", json=spec("api-crash", trials=5, knobs=knobs, measure_s=2.0), headers=AUTH)
        assert r.status_code == 201, r.text
        name = r.json()["name"]
        s = wait_for(lambda: httpx.get(f"{base}/studies/{name}").json(),
                     lambda s: s["trials_done"] >= 2 and s["running_trial"] is not None, 120, "trial 2 running")
        time.sleep(1.0)
        worker = s["pid"]
        os.kill(proc.pid, signal.SIGKILL)
        os.kill(worker, signal.SIGKILL)
        proc.wait(10)
        crashed_trial = s["running_trial"]
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = serve(home, port)  # reconciles: recover, then resume
    try:
        final = wait_for(lambda: httpx.get(f"{base}/studies/{name}").json(),
                         lambda s: s["state"] in ("completed", "failed", "stopped"), 180, "the resumed study to end")
        assert final["state"] == "completed", final
        assert final["resumes"] == 1
        trials = httpx.get(f"{base}/studies/{name}/trials").json()
        failed = [t for t in trials if t["state"] == "fail"]
        assert [t["trial"] for t in failed] == [crashed_trial]
        assert "process running this trial died" in failed[0]["reason"]
        assert len(trials) == 5 and final["trials_done"] == 5
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert snapshot() == before


def test_a_study_interrupted_by_a_service_shutdown_resumes_at_the_next_start(home):
    before = snapshot()
    paths = Paths(home)
    app = create_app(paths, Settings(api_token=TOKEN))
    with TestClient(app, base_url=LOCAL) as c:
        name = c.post("/studies", json=spec("api-restart", trials=4), headers=AUTH).json()["name"]
        wait_for(lambda: c.get(f"/studies/{name}").json(), lambda s: s["trials_done"] >= 1, 120, "one trial")
    # the lifespan's end stopped the worker: knobs restored, state interrupted (to resume)
    assert snapshot() == before
    assert json.loads(app.state.index.summary(name))["state"] == "interrupted"
    with TestClient(create_app(paths, Settings(api_token=TOKEN)), base_url=LOCAL) as c:
        final = wait_for(lambda: c.get(f"/studies/{name}").json(),
                         lambda s: s["state"] in ("completed", "failed", "stopped"), 180, "the resumed study to end")
    assert final["state"] == "completed" and final["trials_done"] == 4, final
    study = optuna.load_study(study_name=name, storage=paths.optuna_url)
    assert study.user_attrs["resumed"] == 1
    assert snapshot() == before


def test_a_study_keeps_running_when_only_the_service_dies_and_is_adopted(home):
    before = snapshot()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(home, port)
    try:
        body = spec("api-adopt", trials=4, knobs={"vm.vfs_cache_pressure": {"low": 50, "high": 200}})
        name = httpx.post(base + "/studies", json=body, headers=AUTH).json()["name"]
        s = wait_for(lambda: httpx.get(f"{base}/studies/{name}").json(), lambda s: s["trials_done"] >= 1, 120,
                     "one trial")
        os.kill(proc.pid, signal.SIGKILL)  # the service alone: its worker lives in a session of its own
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    time.sleep(1.0)
    os.kill(s["pid"], 0)  # the worker carries on without the service
    proc = serve(home, port)
    try:
        final = wait_for(lambda: httpx.get(f"{base}/studies/{name}").json(),
                         lambda s: s["state"] in ("completed", "failed", "stopped"), 180, "the adopted study to end")
        assert final["state"] == "completed" and final["resumes"] == 0, final
        trials = httpx.get(f"{base}/studies/{name}/trials").json()
        assert [t["state"] for t in trials] == ["complete"] * 4  # nothing was interrupted
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    assert snapshot() == before


def test_apply_status_and_rollback_through_the_api(client):
    knob, path = "vm.stat_interval", Path("/proc/sys/vm/stat_interval")
    original = path.read_text()
    new = 2 if int(original) != 2 else 3
    body = {"config": {"format": "novatune.config/v1", "knobs": {knob: new}}}
    try:
        assert client.post("/tuning/apply", json=body).status_code == 401
        dry = client.post("/tuning/apply", json=body, params={"dry_run": True}, headers=AUTH)
        assert dry.status_code == 200 and dry.json()["state"] == "dry_run" and path.read_text() == original
        bad = client.post("/tuning/apply", json={"config": {"format": "novatune.config/v1", "knobs": {knob: 10**9}}},
                          headers=AUTH)
        assert bad.status_code == 422 and knob in bad.json()["detail"]
        assert client.post("/tuning/apply", json={"study": "nope"}, headers=AUTH).status_code == 404
        r = client.post("/tuning/apply", json=body, headers=AUTH)
        assert r.status_code == 200 and r.json()["state"] == "applied", r.text
        app_id = r.json()["id"]
        assert int(path.read_text()) == new
        again = client.post("/tuning/apply", json={"config": {"format": "novatune.config/v1",
                                                              "knobs": {knob: new + 1}}}, headers=AUTH)
        assert again.status_code == 409 and app_id in again.json()["detail"]
        status = client.get("/tuning/status").json()
        assert [a["id"] for a in status["applied"]["active"]] == [app_id] and status["applied"]["drift"] == []
        rb = client.post(f"/tuning/rollback/{app_id}", headers=AUTH)
        assert rb.status_code == 200, rb.text
        assert path.read_text() == original
        assert client.post(f"/tuning/rollback/{app_id}", headers=AUTH).status_code == 409  # already rolled back
        assert [(h["id"], h["state"]) for h in client.get("/tuning/history").json()] == [(app_id, "rolled_back")]
    finally:
        if path.read_text() != original:
            path.write_text(original)
            pytest.fail("vm.stat_interval was left changed")
