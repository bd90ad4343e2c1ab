"""`/rightsizing` and `/cost` through a real `novatune serve`: the service observes the target named in
``observe_targets`` (a cgroup of the test's own holding a running process), the history it stored gets a
proposal, the proposal is approved and applied over HTTP with the token, validated in the service's
background and rolled back byte for byte; a trace imported with `novatune observe --import-csv` is a plan
with prices; SIGTERM stops the service with nothing left changed. Every request goes to 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from benchmarks._service import free_port, start_serve, stop_serve
from tests.actuators.rightsize_target import real_target
from tests.integration.conftest import REPO, needs_root

pytestmark = [needs_root, pytest.mark.slow]

TOKEN = "serve-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Client:
    """Plain HTTP to the service on 127.0.0.1 (the standard library's client): ``status, body``."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, method: str, path: str, *, auth: bool = False) -> tuple[int, Any]:
        req = urllib.request.Request(self.base + path, method=method, headers=AUTH if auth else {})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def get(self, path: str) -> Any:
        status, body = self.call("GET", path)
        assert status == 200, (path, status, body)
        return body


def _until(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout} s")


def _trace(path: Path) -> None:
    rows = ["vm_id,timestamp,cpu_used_cores,mem_used_gib,cpu_cores_capacity,mem_capacity_gib"]
    start = time.time() - 2 * 86400  # recent: the service prunes history past usage_retention_days
    for i in range(2 * 288):  # 2 days at 5 minutes: enough for a recommendation (30 h)
        rows.append(f"web-1,{start + 300 * i:.0f},{0.5 + 0.3 * (i % 12 == 0):.2f},{3 + 0.01 * (i % 7):.2f},8,32")
    path.write_text("\n".join(rows) + "\n")


def test_the_service_observes_recommends_applies_validates_and_rolls_back(tmp_path):
    home, port = tmp_path / "home", free_port()
    with real_target("idle") as t:
        target = f"cgroup:{t.cgroup}"
        quota, limit = t.file("cpu", "cpu.cfs_quota_us"), t.file("memory", "memory.limit_in_bytes")
        before = quota.read_bytes(), limit.read_bytes()
        env = {"NOVATUNE_ALLOWED_TARGETS": json.dumps([target]), "NOVATUNE_OBSERVE_TARGETS": json.dumps([target]),
               "NOVATUNE_OBSERVE_INTERVAL_S": "1", "NOVATUNE_RIGHTSIZING_MIN_HISTORY_H": "0.002",
               "NOVATUNE_RIGHTSIZING_VALIDATION_S": "10"}
        _trace(tmp_path / "trace.csv")
        imported = subprocess.run([sys.executable, "-m", "experiments", "observe", "--import-csv",
                                   str(tmp_path / "trace.csv"), "--json"], cwd=REPO, capture_output=True, text=True,
                                  timeout=120, env={"PATH": "/usr/bin:/bin", "NOVATUNE_HOME": str(home)})
        assert imported.returncode == 0, imported.stderr
        server, log = start_serve(home, TOKEN, port, env=env)
        try:
            c = Client(port)
            _until("the service answers", lambda: _answers(c))
            status = c.get("/rightsizing/targets")
            assert target in status["observing"]["observing"], status
            recs = _until("a proposal for the observed target", lambda: _proposed(c, target))
            by = {r["target"]: r for r in recs}
            assert by["web-1"]["kind"] == "plan-only" and by["web-1"]["proposal"] is None
            assert by["web-1"]["cost"]["instance_plan"]["usd_per_month_delta"] < 0  # 8 cores -> smaller
            pid = by[target]["proposal"]
            assert c.call("POST", f"/rightsizing/approve/{pid}")[0] == 401  # the token is needed
            assert c.call("POST", f"/rightsizing/approve/{pid}", auth=True)[1]["state"] == "approved"
            code, body = c.call("POST", f"/rightsizing/apply/{pid}", auth=True)
            assert code == 200, body
            values = body["values"]
            assert int(quota.read_text()) == round(values["rightsize.cpu_cores"] * 100_000)
            done = _until("the background validation", lambda: _state(c, pid, {"validated", "rolled_back"}))
            assert done["state"] == "validated", done["history"][-1]
            assert c.call("POST", f"/rightsizing/rollback/{pid}", auth=True)[1]["state"] == "rolled_back"
            assert (quota.read_bytes(), limit.read_bytes()) == before
            assert c.get("/cost/savings")["savings_usd_per_month"] > 0
            pred = c.get("/cost/predictions/web-1")
            assert pred["usd"] > 0 and pred["backtest_error_pct"] is not None
            assert c.get("/cost/recommendations")
            assert c.get(f"/cost/predictions/{target}")["target"] == target  # cgroup:/... in the path
        finally:
            code, killed = stop_serve(server, timeout_s=60)
        assert not killed and code == 0, log.read_text()[-3000:]
        assert (quota.read_bytes(), limit.read_bytes()) == before


def _answers(c: Client) -> bool:
    try:
        return c.call("GET", "/healthz")[0] == 200
    except OSError:
        return False


def _proposed(c: Client, target: str) -> list[dict] | None:
    recs = c.get("/rightsizing/recommendations")
    return recs if any(r["target"] == target and r["proposal"] for r in recs) else None


def _state(c: Client, pid: str, states: set[str]) -> dict | None:
    p = c.get(f"/rightsizing/proposals/{pid}")
    return p if p["state"] in states else None
