"""``novatune serve`` observes ``observe_targets``: the real app's lifespan (TestClient over ``create_app``) starts the
observer over a cgroup of the test's own, reports refused targets without failing, and stops it at shutdown."""

from __future__ import annotations

import time
import uuid
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
def test_serve_observes_allowed_targets_reports_refused_ones_and_finds_late_ones(live_cgroup, tmp_path):
    live_cgroup.mkdir("a")
    live_cgroup.spawn(BUSY, 0.2, 30, sub="a")
    web, parent = f"cgroup:{live_cgroup.rel}/a", f"cgroup:{live_cgroup.rel}"
    late = LiveCgroup(f"nt-rs-c-late-{uuid.uuid4().hex[:8]}")
    later = f"cgroup:{late.rel}"
    paths = Paths(tmp_path / "home").ensure()
    settings = Settings(api_token="unit-token-abcdef", allowed_targets=[web, later], observe_interval_s=1,
                        observe_targets=[web, parent, later, "nginx"])
    app = create_app(paths, settings)
    app.state.observing.retry_s = 0.5
    try:
        with TestClient(app, base_url=LOCAL) as client:
            assert client.get("/healthz").status_code == 200
            first = _wait(app, web, 2)
            late.mkdir()  # the late service starts: its cgroup appears and is found on a retry
            late.spawn(BUSY, 0.1, 30)
            _wait(app, later, 1)
            status = app.state.observing.status()
    finally:
        late.cleanup()
    assert first["running"] and first["observing"] == [web] and first["error"] is None
    assert set(first["refused"]) == {parent, "nginx"} and list(first["missing"]) == [later]
    assert "not an allowed target" in first["refused"][parent] and "cgroup:/PATH" in first["refused"]["nginx"]
    assert "no such cgroup" in first["missing"][later]
    assert status["observing"] == sorted([web, later]) and status["missing"] == {}
    assert not app.state.observing.status()["running"]  # stopped with the app
    store = UsageStore(paths.usage_db)
    assert len(store.series(web)) >= 2 and len(store.series(later)) >= 1


def _wait(app, target: str, n: int) -> dict:
    deadline = time.monotonic() + 20
    while app.state.observing.status()["stored"].get(target, 0) < n:
        assert time.monotonic() < deadline, app.state.observing.status()
        time.sleep(0.2)
    return app.state.observing.status()


def test_nothing_to_observe_starts_nothing_and_a_missing_target_is_waited_for(tmp_path):
    paths = Paths(tmp_path / "home").ensure()
    svc = ObservingService(paths, Settings(observe_targets=[]))
    svc.start()
    assert svc.status()["running"] is False and not paths.usage_db.exists()
    svc = ObservingService(paths, Settings(observe_targets=["nginx", "pid:1"], allowed_targets=["exe:/sbin/init"]))
    svc.start()
    st = svc.status()
    assert not st["running"] and set(st["refused"]) == {"nginx", "pid:1"} and not paths.usage_db.exists()
    missing = ["cgroup:/nt-rs-c-x"]
    svc = ObservingService(paths, Settings(observe_targets=missing, allowed_targets=missing))
    svc.start()
    try:
        st = svc.status()
        assert st["running"] and st["observing"] == [] and list(st["missing"]) == ["cgroup:/nt-rs-c-x"]
    finally:
        svc.stop()
    assert not svc.status()["running"]
