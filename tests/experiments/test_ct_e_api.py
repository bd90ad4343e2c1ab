"""``/tuning/continuous`` and the CLI ``novatune autotune``: start (202), status, history, stop, refusals.

The tuner threads run with scripted measurements and studies (``probe.measure`` / ``probe.search``), so
the API's shapes are checked without a workload; the loop itself is tested in test_ct_e_loop.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from experiments.autotune import probe
from experiments.autotune.steps import snapshot
from experiments.cli import main
from experiments.service import create_app
from experiments.settings import Paths, Settings

LOCAL = "http://127.0.0.1"
TOKEN = "unit-token-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
KNOB = "vm.vfs_cache_pressure"
SPEC = {"name": "ct-e-api", "workload": {"kind": "oltp", "workers": 1, "clients": 2},
        "knobs": {KNOB: {"low": 10, "high": 1000}}, "objectives": {"throughput_rps": "maximize"}}


@pytest.fixture
def paths(tmp_path: Any) -> Paths:
    return Paths(tmp_path / "home").ensure()


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    def measure(plan: Any, *, paths: Paths, name: str, windows: int, stop: Any = None) -> probe.Measured:
        return probe.Measured({"throughput_rps": [100.0 + i for i in range(windows)]}, snapshot([KNOB]))

    def search(plan: Any, *, paths: Paths, name: str, min_gain: float, stop: Any = None) -> probe.StudyOutcome:
        return probe.StudyOutcome(name, snapshot([KNOB]), None, "no better configuration")

    monkeypatch.setattr(probe, "measure", measure)
    monkeypatch.setattr(probe, "search", search)


def never_called(req: Any) -> Any:
    raise AssertionError("the scripted studies never propose a change")


def _app(paths: Paths) -> Any:
    """The service; its tuners validate with a double (part B's engine is not in this tree: after the merge,
    drop the override to run them with ``experiments.validate.engine.validated_apply``)."""
    app = create_app(paths, Settings(api_token=TOKEN))
    app.state.continuous.validate = never_called
    return app


@pytest.fixture
def client(paths: Paths, scripted: None) -> Any:
    with TestClient(_app(paths), base_url=LOCAL) as c:
        yield c


def _wait(client: TestClient, tuner_id: str, pred: Any, timeout: float = 30) -> dict[str, Any]:
    end = time.monotonic() + timeout
    while True:
        h = client.get(f"/tuning/continuous/{tuner_id}/history").json()
        if pred(h) or time.monotonic() > end:
            return h
        time.sleep(0.1)


def test_start_status_history_stop(client: TestClient) -> None:
    r = client.post("/tuning/continuous", json={"spec": SPEC, "options": {"interval_s": 3600, "windows": 3}},
                    headers=AUTH)
    assert r.status_code == 202, r.text
    tid = r.json()["id"]
    h = _wait(client, tid, lambda h: len(h["cycles"]) >= 1)
    assert h["cycles"][0]["summary"]["throughput_rps"]["median"] == 101.0 and h["cycles"][0]["decision"] == "no_change"
    status = client.get("/tuning/status").json()
    assert set(status) == {"studies", "applied", "continuous"}
    (row,) = status["continuous"]
    assert row["id"] == tid and row["cycle"] == 1 and row["knobs"] == [KNOB] and KNOB in row["current"]
    # a second tuner on the same knob is refused while the first one runs
    again = client.post("/tuning/continuous", json={"spec": SPEC}, headers=AUTH)
    assert again.status_code == 409 and tid in again.json()["detail"]
    assert client.delete(f"/tuning/continuous/{tid}", headers=AUTH).status_code == 200
    h = _wait(client, tid, lambda h: h["state"] == "stopped")
    assert h["state"] == "stopped" and client.get(f"/tuning/continuous/{tid}").json()["state"] == "stopped"
    assert isinstance(client.get("/tuning/history").json(), list)  # the applications' shape is unchanged


@pytest.mark.parametrize("body", [
    {"spec": {"name": "x", "knobs": {}, "objectives": {"throughput_rps": "maximize"}}},  # no knob
    {"spec": SPEC, "options": {"cycles": 0}},
    {"spec": SPEC, "options": {"windows": 1}},
    {"spec": SPEC, "options": {"keep_limit": 0.1}},
    {"spec": SPEC, "options": {"colour": "blue"}},
    {"spec": "/etc/novatune/spec.yaml"},  # never a server-side path
    {"spec": {**SPEC, "knobs": {"no.such.knob": {"low": 1, "high": 2}}}},
])
def test_bad_bodies_are_422(client: TestClient, body: dict[str, Any]) -> None:
    r = client.post("/tuning/continuous", json=body, headers=AUTH)
    assert r.status_code == 422, r.text
    assert client.get("/tuning/continuous").json() == []  # nothing was started or recorded


def test_unknown_ids_are_404_and_writes_need_the_token(client: TestClient) -> None:
    assert client.delete("/tuning/continuous/at-20000101-000000-abcd", headers=AUTH).status_code == 404
    assert client.get("/tuning/continuous/at-20000101-000000-abcd/history").status_code == 404
    assert client.get("/tuning/continuous/nope").status_code == 404
    assert client.post("/tuning/rollback/at-20000101-000000-abcd-s1", headers=AUTH).status_code == 404
    assert client.post("/tuning/continuous", json={"spec": SPEC}).status_code == 401


def test_the_service_shutdown_stops_its_tuners(paths: Paths, scripted: None) -> None:
    with TestClient(_app(paths), base_url=LOCAL) as c:
        tid = c.post("/tuning/continuous", json={"spec": SPEC, "options": {"interval_s": 3600, "windows": 3}},
                     headers=AUTH).json()["id"]
        _wait(c, tid, lambda h: len(h["cycles"]) >= 1)
    from experiments.autotune.service import history
    assert history(paths, tid)["state"] == "stopped"


# ------------------------------------------------------------------------ CLI
@pytest.mark.parametrize(("args", "message"), [
    (["--cycles", "0"], "cycles must be in [1, 100000], got 0"),
    (["--interval", "-1"], "interval must be in [0, 86400], got -1.0"),
    (["--study-trials", "500"], "study-trials must be in [1, 200], got 500"),
    (["--window", "0"], "window must be in [0.5, 3600], got 0.0"),
    (["--keep-limit", "5%"], "keep limit must be in [-0.99, 0], got 0.05"),
    (["--drop-limit", "ten"], "--drop-limit must be a percentage such as -10% or 0%, got 'ten'"),
])
def test_cli_bad_options_exit_2_with_one_line(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any,
                                              args: list[str], message: str) -> None:
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    spec = tmp_path / "s.json"
    spec.write_text('{"name": "x", "knobs": {"vm.swappiness": {"low": 1, "high": 100}}, '
                    '"objectives": {"throughput_rps": "maximize"}}')
    assert main(["autotune", "run", str(spec), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("error:")


def test_cli_status_and_history(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    assert main(["autotune", "status", "--json"]) == 0 and capsys.readouterr().out.strip() == "[]"
    assert main(["autotune", "history"]) == 2 and "no continuous tuner yet" in capsys.readouterr().err
    assert main(["autotune", "history", "bogus"]) == 2 and "no continuous tuner 'bogus'" in capsys.readouterr().err
    assert main(["autotune", "run", str(tmp_path / "missing.yaml")]) == 2


def test_cli_run_then_history(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any, scripted: None) -> None:
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(SPEC))
    assert main(["autotune", "run", str(spec), "--cycles", "2", "--interval", "0", "--windows", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tuner"]["state"] == "stopped" and out["tuner"]["cycle"] == 2 and out["kept_steps"] == []
    assert main(["autotune", "history", out["tuner"]["id"], "--json"]) == 0
    h = json.loads(capsys.readouterr().out)
    assert [c["cycle"] for c in h["cycles"]] == [1, 2]


def test_rollback_of_a_step_through_the_api(client: TestClient, paths: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments.autotune.loop import Autotuner
    from experiments.autotune.model import AutotuneOptions
    from experiments.deploy.apply import apply_config
    from experiments.spec import parse_spec
    from experiments.validate.model import ValidationReport, ValidationRequest

    before = snapshot([KNOB])[KNOB]
    new = 77 if before != 77 else 78
    monkeypatch.setattr(probe, "search", lambda plan, **kw: probe.StudyOutcome(kw["name"], {}, {KNOB: new}, "s"))

    def kept(req: ValidationRequest) -> ValidationReport:  # the validator double: applies and keeps
        app = apply_config(req.values, paths=paths, source=req.source)
        return ValidationReport(id="v", decision="kept", reason="double", source=req.source, values=req.values,
                                application=app.id)

    t = Autotuner(parse_spec(SPEC), paths=paths, options=AutotuneOptions(cycles=1, interval_s=0, windows=3),
                  validate=kept, settings=Settings())
    try:
        t.run()
        (step,) = client.get(f"/tuning/continuous/{t.id}/history").json()["steps"]
        assert snapshot([KNOB])[KNOB] == new and step["application"]
        r = client.post(f"/tuning/rollback/{step['id']}", headers=AUTH)
        assert r.status_code == 200 and r.json()["step"]["undoes"] == step["id"]
        assert r.json()["id"] == step["application"]  # the application's rollback, as for an application id
        assert snapshot([KNOB])[KNOB] == before
        again = client.post(f"/tuning/rollback/{step['id']}", headers=AUTH)
        assert again.status_code == 409 and "nothing to undo" in again.json()["detail"]
    finally:
        from experiments.deploy.applications import history as app_history
        from experiments.deploy.rollback import rollback
        for app in app_history(paths):
            if app.state == "kept":
                rollback(app.id, paths=paths, force=True)
    assert snapshot([KNOB])[KNOB] == before
