"""``novatune serve`` observes ``observe_targets``: the real app's lifespan (TestClient over ``create_app``) starts the
observer over a cgroup of the test's own, reports refused targets without failing, and stops it at shutdown."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from collectors.usage.history import UsageStore
from experiments.rightsizing.observing import ObservingService
from experiments.service import create_app
from experiments.settings import Paths, Settings
from tests.collectors.usage.conftest import BUSY, LiveCgroup, make_live_cgroup

LOCAL = "http://127.0.0.1"


@pytest.fixture
def live_cgroup() -> Iterator[LiveCgroup]:
    yield from make_live_cgroup()


@pytest.mark.slow
def test_serve_observes_allowed_targets_and_reports_the_refused_ones(live_cgroup, tmp_path):
    live_cgroup.spawn(BUSY, 0.2, 30)
    rule = f"cgroup:{live_cgroup.rel}"
    paths = Paths(tmp_path / "home").ensure()
    settings = Settings(api_token="unit-token-abcdef", allowed_targets=[rule], observe_interval_s=1,
                        observe_targets=[rule, "cgroup:/nt-rs-c-not-allowed", "unit:nt-rs-c-none.service", "nginx"])
    app = create_app(paths, settings)
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/healthz").status_code == 200
        deadline = time.monotonic() + 15
        while app.state.observing.status()["stored"].get(rule, 0) < 2:
            assert time.monotonic() < deadline, app.state.observing.status()
            time.sleep(0.2)
        status = app.state.observing.status()
    assert status["running"] and status["observing"] == [rule] and status["error"] is None
    assert set(status["refused"]) == {"cgroup:/nt-rs-c-not-allowed", "unit:nt-rs-c-none.service", "nginx"}
    assert "no such cgroup" in status["refused"]["cgroup:/nt-rs-c-not-allowed"]
    assert "systemd" in status["refused"]["unit:nt-rs-c-none.service"]
    assert "cgroup:/PATH" in status["refused"]["nginx"]
    assert not app.state.observing.status()["running"]  # stopped with the app
    assert len(UsageStore(paths.usage_db).series(rule)) >= 2


def test_nothing_to_observe_starts_nothing(tmp_path):
    paths = Paths(tmp_path / "home").ensure()
    svc = ObservingService(paths, Settings(observe_targets=[]))
    svc.start()
    assert svc.status()["running"] is False and not paths.usage_db.exists()
    svc = ObservingService(paths, Settings(observe_targets=["cgroup:/nt-rs-c-x"]))  # nothing allowed
    svc.start()
    st = svc.status()
    assert not st["running"] and "cgroup:/nt-rs-c-x" in st["refused"] and not paths.usage_db.exists()
    svc.stop()
