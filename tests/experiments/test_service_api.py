"""The API's settings, auth, error map and study registry, on the real app (no study runs here)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import optuna
import pytest
from fastapi.testclient import TestClient

from experiments.service import create_app
from experiments.settings import Paths, Settings, SettingsError, api_token, token_file
from experiments.spec import parse_spec
from experiments.study.manager import StudyConflict, StudyManager, shared_knobs

#: the Host the test client sends: the guard answers loopback names only (its default 'testserver' is 400)
LOCAL = "http://127.0.0.1"

TOKEN = "unit-token-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def spec(name="s", knobs=None):
    return parse_spec({
        "name": name,
        "workload": {"kind": "oltp"},
        "knobs": knobs or {"vm.swappiness": {"low": 1, "high": 100}},
        "objectives": {"throughput_rps": "maximize"},
    })


@pytest.fixture()
def paths(tmp_path):
    return Paths(tmp_path / "home").ensure()


@pytest.fixture()
def client(paths):
    with TestClient(create_app(paths, Settings(api_token=TOKEN)), base_url=LOCAL) as c:
        yield c


# ----------------------------------------------------------------- settings
def test_environment_wins_over_the_config_file_which_wins_over_defaults(tmp_path, monkeypatch):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("max_running_studies: 3\nport: 9000\n")
    monkeypatch.setenv("NOVATUNE_CONFIG", str(cfg))
    monkeypatch.setenv("NOVATUNE_PORT", "9100")
    s = Settings.load()
    assert (s.max_running_studies, s.port, s.stop_timeout_s) == (3, 9100, 60.0)


@pytest.mark.parametrize(("text", "message"), [
    ("colour: blue\n", "colour: Extra inputs are not permitted"),
    ("max_running_studies: 0\n", "max_running_studies: Input should be greater than or equal to 1"),
    ("port: [1\n", "cannot read the settings file"),
])
def test_a_bad_settings_file_is_named_with_what_is_wrong(tmp_path, monkeypatch, text, message):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    monkeypatch.setenv("NOVATUNE_CONFIG", str(cfg))
    with pytest.raises(SettingsError) as err:
        Settings.load()
    assert message in str(err.value) and str(cfg) in str(err.value)


def test_the_cli_refuses_bad_settings_with_exit_2_and_no_traceback(tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text("log_level: loud\n")
    env = {**os.environ, "NOVATUNE_HOME": str(tmp_path / "h"), "NOVATUNE_CONFIG": str(cfg)}
    proc = subprocess.run([sys.executable, "-m", "experiments", "settings", "show"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "log_level" in proc.stderr and "Traceback" not in proc.stderr


def test_a_token_is_generated_once_private_and_then_reused(paths):
    token, source = api_token(Settings(), paths)
    assert source == "generated" and len(token) >= 32
    assert stat.S_IMODE(token_file(paths).stat().st_mode) == 0o600
    assert api_token(Settings(), paths) == (token, str(token_file(paths)))
    assert api_token(Settings(api_token="mine-0123456789ab"), paths) == ("mine-0123456789ab", "setting")


# --------------------------------------------------------------------- auth
def test_writes_need_the_token_and_reads_only_when_configured(client):
    assert client.get("/studies").status_code == 200
    r = client.patch("/settings", json={"require_token_for_reads": True})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert client.patch("/settings", json={"require_token_for_reads": True}, headers=AUTH).status_code == 200
    assert client.get("/studies").status_code == 401
    assert client.get("/metrics").status_code == 401
    assert client.get("/studies", headers=AUTH).status_code == 200
    assert client.get("/healthz").status_code == 200  # liveness never needs it
    assert client.get("/settings", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_safe_settings_change_at_runtime_and_others_are_refused(client):
    r = client.patch("/settings", json={"max_running_studies": 1, "stop_timeout_s": 5}, headers=AUTH)
    assert r.status_code == 200 and r.json()["max_running_studies"] == 1
    assert client.app.state.manager.max_running == 1 and client.app.state.manager.stop_timeout_s == 5
    for body in ({"api_token": "x"}, {"host": "0.0.0.0"}, {"max_running_studies": 0}, {"log_level": "loud"}):
        bad = client.patch("/settings", json=body, headers=AUTH)
        assert bad.status_code == 422, (body, bad.text)
    shown = client.get("/settings").json()
    assert TOKEN not in str(shown) and shown["host"] == "127.0.0.1"


# ------------------------------------------------------------------- errors
def test_unknown_studies_are_404_and_invalid_specs_422_with_every_problem(client):
    for method, path in (("get", "/studies/nope"), ("get", "/studies/nope/trials"), ("get", "/studies/nope/pareto"),
                         ("get", "/studies/nope/export"), ("post", "/studies/nope/stop"), ("delete", "/studies/nope")):
        r = client.request(method, path, headers=AUTH)
        assert r.status_code == 404 and "nope" in r.json()["detail"], (path, r.text)
    bad = {"name": "x", "workload": {"kind": "oltp"}, "knobs": {"vm.swappiness": {"low": 1, "high": 1000}},
           "objectives": {"speed": "maximize"}}
    r = client.post("/studies", json=bad, headers=AUTH)
    assert r.status_code == 422
    problems = r.json()["problems"]
    assert any("vm.swappiness" in p and "bounds" in p for p in problems), problems
    assert any("speed" in p for p in problems), problems
    assert client.post("/studies", content=b"{not json", headers={**AUTH, "content-type": "application/json"}
                       ).status_code == 422
    assert client.get("/studies/..%2Fetc").status_code in (404, 422)
    assert client.get("/knobs/vm.nope").status_code == 404


def test_an_export_of_a_study_without_a_feasible_trial_is_409(client, paths):
    study = optuna.create_study(study_name="empty", storage=paths.optuna_url, directions=["maximize"])
    study.set_user_attr("objectives", ["throughput_rps"])
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    r = client.get("/studies/empty/export", params={"format": "sysctl"})
    assert r.status_code == 409 and "nothing to export" in r.json()["detail"]
    assert [s["name"] for s in client.get("/studies").json()] == ["empty"]  # a study the CLI ran shows too
    for params in ({"format": "sysctl", "include": "throughput-performance"}, {"format": "tuned", "include": "../x"}):
        bad = client.get("/studies/empty/export", params=params)
        assert bad.status_code == 422 and "include" in bad.json()["detail"], bad.text


def test_the_schema_has_every_endpoint(client):
    paths = set(client.get("/openapi.json").json()["paths"])
    assert {"/studies", "/studies/{study_id}", "/studies/{study_id}/stop", "/studies/{study_id}/trials",
            "/studies/{study_id}/pareto", "/studies/{study_id}/export", "/tuning/status", "/tuning/history",
            "/tuning/convergence", "/tuning/rollback/{application_id}", "/knobs", "/healthz", "/metrics",
            "/settings", "/hosts", "/hosts/{host_id}"} <= paths
    assert client.get("/docs").status_code == 200


# ----------------------------------------------------------------- registry
def test_two_studies_never_share_a_host_knob_but_may_size_their_own_workloads(paths):
    mgr = StudyManager(paths, max_running=3)
    me = os.getpid()  # a live "foreground run": it holds its knobs
    mgr.claim(spec("a", {"vm.swappiness": {"low": 1, "high": 9}, "sizing.vcpus": {"low": 0.5, "high": 1}}),
              name=None, trials=1, managed=False, pid=me)
    with pytest.raises(StudyConflict, match="vm.swappiness"):
        mgr.claim(spec("b", {"vm.swappiness": {"low": 1, "high": 9}}), name=None, trials=1, managed=False, pid=me)
    b = mgr.claim(spec("b", {"sizing.vcpus": {"low": 0.5, "high": 1}, "vm.dirty_ratio": {"low": 10, "high": 20}}),
                  name=None, trials=1, managed=False, pid=me)
    assert b.shared == ["vm.dirty_ratio"]
    ghost = mgr.claim(spec("b", {"kernel.numa_balancing": {"low": 0, "high": 1}}), name=None, trials=1,
                      managed=False, pid=None)
    assert ghost.name == "b-2"  # names are made unique
    with pytest.raises(StudyConflict, match="a study named 'b' exists already"):  # unless one was asked for
        mgr.claim(spec("x", {"kernel.numa_balancing": {"low": 0, "high": 1}}), name="b", trials=1, managed=False,
                  pid=None)
    # a foreground run that died (no live pid) holds nothing: the same knob can be claimed again
    mgr.claim(spec("c", {"kernel.numa_balancing": {"low": 0, "high": 1}}), name=None, trials=1, managed=False, pid=me)
    mgr.max_running = 3
    with pytest.raises(StudyConflict, match="max_running_studies is 3"):
        mgr.claim(spec("d", {"thp.enabled": {"choices": ["never"]}}), name=None, trials=1, managed=False, pid=me)


def test_only_host_wide_knobs_are_shared():
    assert shared_knobs(["sizing.vcpus", "affinity.cpus", "sched.nice", "vm.swappiness", "net.core.somaxconn",
                         "instance.type"]) == ["net.core.somaxconn", "vm.swappiness"]


def test_a_study_being_launched_is_not_taken_for_a_dead_one(paths, monkeypatch):
    """The watcher's reconcile may run between a launch's claim and its worker's start."""
    mgr = StudyManager(paths)
    spawned = []
    monkeypatch.setattr(mgr, "_spawn", spawned.append)
    rec = mgr.claim(spec("launching"), name=None, trials=1, managed=True)
    assert rec.state == "starting" and rec.pid is None
    assert mgr.reconcile() == [] and spawned == []  # not resumed: no second worker
    mgr.update("launching", pid=2**22 + 12345)  # a worker that started, then died: resumed
    assert mgr.reconcile() == ["launching: resumed"] and spawned == ["launching"]


def test_a_background_study_whose_worker_is_gone_is_shown_interrupted(paths):
    from experiments.service.views import StudyIndex

    mgr = StudyManager(paths)
    mgr.claim(spec("orphan"), name=None, trials=1, managed=True)
    mgr.update("orphan", state="running", pid=2**22 + 12345)  # no such process
    shown = json.loads(StudyIndex(paths, mgr).summary("orphan"))
    assert shown["state"] == "interrupted" and "`novatune serve` resumes" in shown["reason"]
    assert mgr.get("orphan").state == "running"  # a read changes nothing
