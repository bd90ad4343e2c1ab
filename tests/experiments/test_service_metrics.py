"""The HTTP service's first slice: /healthz, /metrics (host + tuner state), and ``novatune serve``.

``promtool check metrics`` runs on the exposition when promtool is found (PROMTOOL=/path
overrides the PATH lookup; .ci/run unpacks it from the Debian prometheus package).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from experiments.service import create_app, package_version
from experiments.settings import Paths

#: the Host the test client sends: the guard answers loopback names only (its default 'testserver' is 400)
LOCAL = "http://127.0.0.1"

REPO = Path(__file__).resolve().parents[2]
STUDY_FAMILIES = {
    "novatune_study_info", "novatune_study_running", "novatune_study_trials",
    "novatune_study_best_value", "novatune_study_store_up", "novatune_study_pareto_front_trials",
}
# (throughput_rps, cost_usd_per_hour) of the three complete trials; trial 2 breaks the SLA constraint
TRIALS = [((800.0, 0.05), -1.0), ((950.0, 0.07), -2.0), ((1200.0, 0.02), 5.0)]


def _families(body: bytes) -> dict[str, object]:
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def _samples(fams: dict, name: str) -> list:
    return list(fams[name].samples) if name in fams else []


def _make_study(paths: Paths, name: str = "oltp-1", *, state: str = "completed") -> None:
    """A study as the study loop (experiments.study) leaves it: user attrs objectives/state, constraints,
    complete trials."""
    paths.ensure()
    study = optuna.create_study(
        study_name=name,
        storage=paths.optuna_url,
        directions=["maximize", "minimize"],
        sampler=optuna.samplers.RandomSampler(seed=1),
    )
    study.set_user_attr("objectives", ["throughput_rps", "cost_usd_per_hour"])
    study.set_user_attr("state", state)
    dist = optuna.distributions.IntDistribution(0, 100)
    for i, (values, violation) in enumerate(TRIALS):
        study.add_trial(
            optuna.trial.create_trial(
                params={"vm.swappiness": 10 * i},
                distributions={"vm.swappiness": dist},
                values=list(values),
                constraints={"latency_p95_ms": violation},
            )
        )
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "home")


@pytest.fixture
def client(paths: Paths):
    with TestClient(create_app(paths), base_url=LOCAL) as c:
        yield c


def _promtool() -> str | None:
    env = os.environ.get("PROMTOOL")
    return env if env and os.access(env, os.X_OK) else shutil.which("promtool")


# ------------------------------------------------------------------ app
def test_healthz(client, paths):
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "version": package_version(), "data_dir": str(paths.home)}


def test_openapi_and_docs(client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "novatune"
    assert spec["info"]["version"] == package_version()
    assert {"/healthz", "/metrics"} <= set(spec["paths"])
    assert client.get("/docs").status_code == 200


def test_metrics_without_store(client, paths):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == CONTENT_TYPE_LATEST
    fams = _families(r.content)
    host = [n for n in fams if n.startswith("novatune_") and n not in STUDY_FAMILIES and n != "novatune_build_info"]
    assert len(host) >= 40, sorted(fams)
    # the sampler is primed when the app is built: rates are there from the first scrape
    assert "novatune_cpu_util_ratio" in fams
    assert set(fams) >= STUDY_FAMILIES
    assert [s.value for s in _samples(fams, "novatune_study_store_up")] == [1.0]
    assert _samples(fams, "novatune_study_info") == []
    (build,) = _samples(fams, "novatune_build_info")
    assert build.labels == {"version": package_version()} and build.value == 1.0
    assert not paths.optuna_db.exists(), "a scrape must not create the study store"
    for fam in fams.values():
        assert fam.documentation, f"{fam.name} has no HELP"


def test_metrics_study_state(paths):
    _make_study(paths)
    client = TestClient(create_app(paths), base_url=LOCAL)
    fams = _families(client.get("/metrics").content)
    trials = {s.labels["state"]: s.value for s in _samples(fams, "novatune_study_trials")
              if s.labels["study"] == "oltp-1"}
    assert trials["complete"] == 3 and trials["fail"] == 1 and trials["running"] == 0
    best = {(s.labels["objective"], s.labels["direction"]): s.value
            for s in _samples(fams, "novatune_study_best_value")}
    # trial 2 (1200 rps, 0.02 $/h) is infeasible: the best values come from the feasible two
    assert best == {("throughput_rps", "maximize"): 950.0, ("cost_usd_per_hour", "minimize"): 0.05}
    # neither feasible trial dominates the other (more rps costs more): both are on the front
    assert [s.value for s in _samples(fams, "novatune_study_pareto_front_trials")] == [2.0]
    (info,) = _samples(fams, "novatune_study_info")
    assert info.labels == {"study": "oltp-1", "state": "completed"} and info.value == 1.0
    assert [s.value for s in _samples(fams, "novatune_study_running")] == [0.0]

    # the store is read per scrape: a study started later shows up without a restart
    _make_study(paths, "oltp-2", state="running")
    fams = _families(client.get("/metrics").content)
    running = {s.labels["study"]: s.value for s in _samples(fams, "novatune_study_running")}
    assert running == {"oltp-1": 0.0, "oltp-2": 1.0}


def test_metrics_best_value_single_objective(paths):
    """best_value equals what Optuna calls the best trial (one objective, no constraints)."""
    paths.ensure()
    study = optuna.create_study(study_name="single", storage=paths.optuna_url, direction="minimize")
    study.set_user_attr("objectives", ["latency_p95_ms"])
    study.set_user_attr("state", "completed")
    for v in (12.5, 7.25, 9.0):
        study.add_trial(optuna.trial.create_trial(value=v))
    fams = _families(TestClient(create_app(paths), base_url=LOCAL).get("/metrics").content)
    (best,) = _samples(fams, "novatune_study_best_value")
    assert best.labels == {"study": "single", "objective": "latency_p95_ms", "direction": "minimize"}
    assert best.value == study.best_value == 7.25


def test_metrics_unreadable_store_keeps_host_metrics(paths):
    paths.ensure()
    paths.optuna_db.write_bytes(b"this is not a sqlite database" * 100)
    r = TestClient(create_app(paths), base_url=LOCAL).get("/metrics")
    assert r.status_code == 200
    fams = _families(r.content)
    assert [s.value for s in _samples(fams, "novatune_study_store_up")] == [0.0]
    assert "novatune_cpu_util_ratio" in fams


def test_promtool_check_metrics(paths):
    promtool = _promtool()
    if promtool is None:
        pytest.skip("promtool not installed (.ci/run unpacks it from the Debian prometheus package)")
    _make_study(paths)
    body = TestClient(create_app(paths), base_url=LOCAL).get("/metrics").content
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False)
    output = (proc.stdout + proc.stderr).decode()
    assert proc.returncode == 0 and output.strip() == "", output


# ------------------------------------------------------------ novatune serve
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(home: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "NOVATUNE_HOME": str(home), "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("NOVATUNE_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "experiments", "serve", "--port", str(port)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _get(url: str, timeout: float = 5.0) -> tuple[int, str, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via an http_proxy
    with opener.open(url, timeout=timeout) as r:
        return r.status, r.headers["content-type"], r.read()


@pytest.mark.timeout(60)
def test_serve_subprocess(paths):
    _make_study(paths)
    port = _free_port()
    proc = _serve(paths.home, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.communicate(timeout=5)
            try:
                status, _, body = _get(f"http://127.0.0.1:{port}/healthz", timeout=1.0)
                break
            except OSError as e:  # not listening yet (URLError is an OSError)
                if time.monotonic() > deadline:
                    raise AssertionError(f"no answer on /healthz within 30 s: {e}") from None
            time.sleep(0.2)
        assert status == 200 and json.loads(body)["data_dir"] == str(paths.home)
        status, ctype, body = _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and ctype == CONTENT_TYPE_LATEST
        fams = _families(body)
        assert {s.labels["study"] for s in _samples(fams, "novatune_study_info")} == {"oltp-1"}
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
            raise AssertionError("serve did not stop within 15 s of SIGTERM") from None
    assert proc.returncode == 0, stderr.decode()
    assert b"Traceback" not in stderr


@pytest.mark.timeout(60)
def test_serve_port_in_use(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = _serve(tmp_path / "home", port)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate(timeout=5)
            raise AssertionError("serve on a busy port did not exit within 30 s") from None
    text = " ".join(err.decode().split())
    assert proc.returncode == 2, text
    assert f"cannot listen on 127.0.0.1:{port}" in text and "Address already in use" in text
    assert "Traceback" not in text and "Traceback" not in out.decode()
