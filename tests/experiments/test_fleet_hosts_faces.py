"""The host registry's read side over SQLite: ``GET /hosts[/{id}]``, ``novatune fleet hosts [--json]`` and the
``novatune_agent_*`` families of ``/metrics``; none of them creates anything."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from experiments.cli import main
from experiments.cli.fleet import ago
from experiments.fleet.hosts import TABLE, HostRegistry
from experiments.service import create_app
from experiments.service.exposition import ServiceMetrics
from experiments.settings import Paths

LOCAL = "http://127.0.0.1"


def _age(paths: Paths, host_id: str, seconds: float) -> None:
    """Make ``host_id``'s last heartbeat ``seconds`` old (an agent that went silent)."""
    engine = sa.create_engine(paths.optuna_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {TABLE} SET last_seen = :t WHERE id = :id"),
                     {"t": time.time() - seconds, "id": host_id})
    engine.dispose()


@pytest.fixture()
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Paths:
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    # set (empty: no storage) so that monkeypatch removes what `novatune --storage URL` puts in os.environ
    monkeypatch.setenv("NOVATUNE_STORAGE", "")
    monkeypatch.delenv("NOVATUNE_FLEET_DEAD_AFTER_S", raising=False)
    return Paths(tmp_path / "home", None).ensure()


@pytest.fixture()
def fleet(paths: Paths) -> Paths:
    """Two agents' hosts: ``db-1`` running a trial, ``web-1`` silent for 10 minutes."""
    with HostRegistry(paths.optuna_url) as registry:
        registry.register("db-1", labels={"role": "db"}, facts={"kernel": "6.1.0-test", "cpus": 8})
        registry.heartbeat("db-1", state="trial", study="oltp", trial=2)
        registry.register("web-1", labels={"role": "web", "zone": "a"}, facts={"kernel": "6.8.0-test", "cpus": 2})
    _age(paths, "web-1", 600)
    return paths


def test_get_hosts_lists_them_with_alive(fleet: Paths) -> None:
    with TestClient(create_app(fleet), base_url=LOCAL) as client:
        r = client.get("/hosts")
        assert r.status_code == 200
        by_id = {h["id"]: h for h in r.json()}
        assert list(by_id) == ["db-1", "web-1"]
        assert (by_id["db-1"]["alive"], by_id["db-1"]["state"], by_id["db-1"]["study"], by_id["db-1"]["trial"]) == (
            True, "trial", "oltp", 2)
        assert by_id["web-1"]["alive"] is False and by_id["web-1"]["last_seen_ago_s"] >= 600
        assert by_id["web-1"]["labels"] == {"role": "web", "zone": "a"}
        one = client.get("/hosts/db-1")
        assert one.status_code == 200 and one.json()["facts"] == {"kernel": "6.1.0-test", "cpus": 8}


def test_reads_need_the_token_when_require_token_for_reads(fleet: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVATUNE_REQUIRE_TOKEN_FOR_READS", "true")
    app = create_app(fleet)
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/hosts").status_code == 401
        assert client.get("/hosts/db-1").status_code == 401
        auth = {"Authorization": f"Bearer {app.state.token}"}
        assert [h["id"] for h in client.get("/hosts", headers=auth).json()] == ["db-1", "web-1"]


def test_dead_after_is_the_setting(fleet: Paths, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVATUNE_FLEET_DEAD_AFTER_S", "3600")
    with TestClient(create_app(fleet), base_url=LOCAL) as client:
        assert [h["alive"] for h in client.get("/hosts").json()] == [True, True]


@pytest.mark.parametrize(("url", "status", "says"), [
    ("/hosts/nobody", 404, "no host 'nobody' is registered; GET /hosts lists them"),
    ("/hosts/a%20b", 422, "pattern"),
    ("/hosts/" + "x" * 65, 422, "64"),
])
def test_an_unknown_or_bad_host_id(fleet: Paths, url: str, status: int, says: str) -> None:
    with TestClient(create_app(fleet), base_url=LOCAL) as client:
        r = client.get(url)
    assert r.status_code == status, r.text
    assert says in json.dumps(r.json())
    if status == 404:
        assert r.json()["error"] == "UnknownHost"


def test_reads_without_a_registry_list_no_host_and_create_nothing(paths: Paths, capsys) -> None:
    assert not paths.optuna_db.exists()
    with TestClient(create_app(paths), base_url=LOCAL) as client:
        assert client.get("/hosts").json() == []
        assert client.get("/hosts/db-1").status_code == 404
        fams = {f.name for f in text_string_to_metric_families(client.get("/metrics").text)}
    assert "novatune_agent_up" in fams
    assert main(["fleet", "hosts", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert not paths.optuna_db.exists()


def test_metrics_have_the_agent_families(fleet: Paths) -> None:
    with TestClient(create_app(fleet), base_url=LOCAL) as client:
        fams = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").text)}
    up = {s.labels["host"]: s.value for s in fams["novatune_agent_up"].samples}
    assert up == {"db-1": 1.0, "web-1": 0.0}
    seen = {s.labels["host"]: s.value for s in fams["novatune_agent_last_seen_timestamp_seconds"].samples}
    assert time.time() - 600 - 5 < seen["web-1"] < time.time() - 600 + 5 < seen["db-1"]
    info = {(s.labels["host"], s.labels["state"], s.labels["kernel"]) for s in fams["novatune_agent_info"].samples}
    assert info == {("db-1", "trial", "6.1.0-test"), ("web-1", "idle", "6.8.0-test")}


def test_promtool_accepts_the_agent_families(fleet: Paths) -> None:
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    if not promtool or not os.access(promtool, os.X_OK):
        pytest.skip("promtool not installed (.ci/run unpacks it from the Debian prometheus package)")
    with TestClient(create_app(fleet), base_url=LOCAL) as client:
        body = client.get("/metrics").content
    assert b'novatune_agent_up{host="db-1"} 1.0' in body
    proc = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False)
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip(), proc.stdout + proc.stderr


def test_an_unreachable_registry_leaves_the_families_out_and_warns_once(paths: Paths, caplog) -> None:
    bad = HostRegistry("postgresql://novatune:s3cret-pass@127.0.0.1:1/novatune", migrate=False)
    metrics = ServiceMetrics(paths, version="test", process=False, hosts=bad)
    with caplog.at_level(logging.WARNING, logger="experiments.fleet.metrics"):
        bodies = [metrics.render().decode() for _ in range(2)]
    for body in bodies:
        fams = {f.name for f in text_string_to_metric_families(body)}
        assert "novatune_build_info" in fams and not {f for f in fams if f.startswith("novatune_agent")}
    warnings = [r for r in caplog.records if r.name == "experiments.fleet.metrics"]
    assert len(warnings) == 1 and "cannot read the host registry" in warnings[0].getMessage()
    assert "s3cret-pass" not in warnings[0].getMessage()


def test_cli_fleet_hosts_json_and_table(fleet: Paths, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    from experiments.cli import _common

    monkeypatch.setattr(_common.out, "_width", 200)  # a wide terminal: no cell folded
    assert main(["fleet", "hosts", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(h["id"], h["alive"], h["state"]) for h in listed] == [("db-1", True, "trial"), ("web-1", False, "idle")]
    assert main(["fleet", "hosts"]) == 0
    table = capsys.readouterr().out
    for cell in ("db-1", "role=db", "oltp/2", "6.1.0-test", "web-1", "role=web,zone=a", "10m0", "hosts (2;"):
        assert cell in table, table


def test_cli_fleet_hosts_on_an_unreachable_storage_is_exit_2_without_a_traceback(paths: Paths, capsys) -> None:
    rc = main(["--storage", "postgresql://novatune:s3cret-pass@127.0.0.1:1/novatune", "fleet", "hosts"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "cannot read the host registry in postgresql+psycopg://novatune:***@127.0.0.1:1/novatune" in " ".join(
        err.split())
    assert "Traceback" not in err and "s3cret-pass" not in err


@pytest.mark.parametrize(("seconds", "shown"), [(-3, "0s"), (4.9, "4s"), (125, "2m05s"), (3 * 3600 + 420, "3h07m"),
                                                (2 * 86400 + 4 * 3600, "2d04h")])
def test_ago(seconds: float, shown: str) -> None:
    assert ago(seconds) == shown
