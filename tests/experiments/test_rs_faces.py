"""`/rightsizing`, `/cost` and `novatune rightsize|cost` over the real engine.

Fast: a plan-only target imported from a trace (a VM elsewhere) is recommended, priced, predicted and never
proposed; refusals (token, bad profile, malformed and unknown ids, unknown targets) are 4xx with the reason,
and the CLI exits 2 with one line. Slow: a live cgroup of the test's own, observed for real, gets a proposal
that is approved, applied to its kernel files through the API, validated in the background and rolled back
byte for byte; every step is in the history with who did it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from collectors.passive.allowed import PassivePolicy
from collectors.usage.history import UsageStore
from collectors.usage.observe import Observer
from collectors.usage.target import resolve_target
from experiments.service import create_app
from experiments.settings import Paths, Settings
from optimizer.rightsizing.model import UsageSeries
from tests.actuators.rightsize_target import real_target

LOCAL = "http://127.0.0.1"
TOKEN = "unit-token-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAY = 86400.0


def vm_series(name: str = "vm-a", days: float = 4.0) -> UsageSeries:
    """A VM of 8 cores / 32 GiB that uses about 1.5 cores (daily cycle) and 6 GiB."""
    t = np.arange(0, days * DAY, 300.0) + 1.7e9
    rng = np.random.default_rng(7)
    cpu = 1.2 + 0.4 * np.sin(2 * np.pi * t / DAY) + rng.gamma(2.0, 0.05, len(t))
    mem = 6.0 + rng.normal(0, 0.1, len(t)).clip(-0.3, 0.3)
    return UsageSeries(name, t=t, cpu_cores=cpu, mem_gib=mem, cpu_capacity=np.full(len(t), 8.0),
                       mem_capacity=np.full(len(t), 32.0))


@pytest.fixture()
def paths(tmp_path):
    return Paths(tmp_path / "home").ensure()


def client(paths: Paths, **kw) -> TestClient:
    return TestClient(create_app(paths, Settings(api_token=TOKEN, **kw)), base_url=LOCAL)


def test_a_plan_only_target_is_recommended_priced_and_predicted_never_proposed(paths):
    UsageStore(paths.usage_db).import_series(vm_series(), source="csv")
    with client(paths) as c:
        recs = c.get("/rightsizing/recommendations").json()
        assert len(recs) == 1
        r = recs[0]
        assert r["target"] == "vm-a" and r["kind"] == "plan-only" and r["proposal"] is None
        assert r["finding"] == "over-provisioned" and r["current_cpu_cores"] == 8.0
        assert 1.6 < r["cpu_cores"] < 4 and 6.2 < r["mem_gib"] < 12
        plan = r["cost"]["instance_plan"]
        assert plan["current_type"] and plan["recommended_type"] and plan["usd_per_month_delta"] < 0
        assert plan["usd_per_month_delta"] == pytest.approx(plan["recommended_usd_per_month"]
                                                           - plan["current_usd_per_month"], abs=0.011)
        cost = c.get("/cost/recommendations", params={"profile": "savings"}).json()
        assert cost[0]["target"] == "vm-a" and cost[0]["front"]
        risks = [o["risk"] for o in cost[0]["front"]]
        dollars = [o["usd_per_month"] for o in cost[0]["front"]]
        assert dollars == sorted(dollars) and risks == sorted(risks, reverse=True)  # a front: cheaper is riskier
        pred = c.get("/cost/predictions/vm-a", params={"days": 30}).json()
        assert pred["low"] <= pred["usd"] <= pred["high"] and pred["backtest_error_pct"] is not None
        saved = c.get("/cost/savings").json()
        assert saved["savings_usd_per_month"] > 0 and saved["targets"][0]["target"] == "vm-a"
        assert c.get("/rightsizing/history").json() == []


def test_refusals_are_4xx_with_the_reason(paths):
    UsageStore(paths.usage_db).import_series(vm_series(), source="csv")
    with client(paths) as c:
        r = c.get("/rightsizing/recommendations", params={"profile": "cheap"})
        assert r.status_code == 422 and "savings|balanced|reliability" in r.text
        assert c.get("/cost/predictions/no-such-vm").status_code == 404
        assert c.get("/cost/predictions/vm-a", params={"days": 0}).status_code == 422
        assert c.get("/rightsizing/proposals/../x").status_code in (404, 422)
        assert c.get("/rightsizing/proposals/rs-20260101-000000-abcdef").status_code == 404
        assert c.post("/rightsizing/apply/rs-20260101-000000-abcdef").status_code == 401  # no token
        r = c.post("/rightsizing/apply/rs-20260101-000000-abcdef", headers=AUTH)
        assert r.status_code == 404 and "rs-20260101-000000-abcdef" in r.text
        assert c.post("/rightsizing/approve/not-an-id", headers=AUTH).status_code == 422


def cli(paths: Paths, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments", *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "NOVATUNE_HOME": str(paths.home), "COLUMNS": "200", **env})


@pytest.mark.slow
def test_the_cli_answers_json_and_refuses_in_one_line(paths):
    UsageStore(paths.usage_db).import_series(vm_series(), source="csv")
    listed = json.loads(cli(paths, "rightsize", "list", "--json").stdout)
    assert [r["target"] for r in listed] == ["vm-a"]
    shown = json.loads(cli(paths, "rightsize", "show", "vm-a", "--json").stdout)
    assert shown["recommendation"]["target"] == "vm-a"
    pred = json.loads(cli(paths, "cost", "predict", "vm-a", "--json").stdout)
    assert pred["usd"] > 0
    assert json.loads(cli(paths, "cost", "savings", "--json").stdout)["savings_usd_per_month"] > 0
    for args, words in ((("rightsize", "approve", "rs-20260101-000000-abcdef"), "rs-20260101-000000-abcdef"),
                        (("rightsize", "list", "--profile", "cheap"), "savings, balanced, reliability"),
                        (("cost", "predict", "no-such-vm"), "no-such-vm")):
        p = cli(paths, *args)
        assert p.returncode == 2 and "Traceback" not in p.stderr and words in p.stderr, (args, p.stderr)


def observe(target: str, store: UsageStore, *, seconds: float) -> None:
    """Observe ``target`` for real, every 0.2 s, for ``seconds``."""
    resolved = resolve_target(target, policy=PassivePolicy.of([target]))
    stop = threading.Event()
    Observer([resolved], store, interval_s=0.2, stop=stop).run(duration_s=seconds)


def wait_state(c: TestClient, pid: str, states: set[str], timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = c.get(f"/rightsizing/proposals/{pid}").json()
        if p["state"] in states:
            return p
        time.sleep(0.2)
    raise AssertionError(f"proposal {pid} still {p['state']} after {timeout} s")


@pytest.mark.slow
@pytest.mark.root
def test_a_live_target_is_approved_applied_validated_and_rolled_back_through_the_api(paths):
    with real_target("idle") as t:
        target = f"cgroup:{t.cgroup}"
        quota, limit = t.file("cpu", "cpu.cfs_quota_us"), t.file("memory", "memory.limit_in_bytes")
        before = quota.read_bytes(), limit.read_bytes()
        observe(target, UsageStore(paths.usage_db), seconds=5.0)
        with client(paths, allowed_targets=[target], rightsizing_min_history_h=0.001) as c:
            recs = c.get("/rightsizing/recommendations").json()
            assert c.get("/rightsizing/recommendations").json()[0]["proposal"] == recs[0]["proposal"]  # no pile-up
            r = recs[0]
            assert r["kind"] == "live" and r["finding"] == "over-provisioned" and r["state"] == "proposed", r
            pid = r["proposal"]
            r409 = c.post(f"/rightsizing/apply/{pid}", headers=AUTH)
            assert r409.status_code == 409 and "approved" in r409.text  # apply needs an approval first
            assert c.post(f"/rightsizing/approve/{pid}", headers=AUTH, params={"note": "ok"}).json()["state"] \
                == "approved"
            resp = c.post(f"/rightsizing/apply/{pid}", headers=AUTH, params={"validate_s": 2})
            assert resp.status_code == 200, resp.text
            applied = resp.json()
            assert applied["state"] == "applied"
            values = applied["values"]
            assert int(quota.read_text()) == round(values["rightsize.cpu_cores"] * 100_000)
            assert int(limit.read_text()) // 4096 == int(values["rightsize.memory_gib"] * 2**30) // 4096
            assert wait_state(c, pid, {"validated", "rolled_back"})["state"] == "validated"
            assert c.post(f"/rightsizing/rollback/{pid}", headers=AUTH).json()["state"] == "rolled_back"
            assert (quota.read_bytes(), limit.read_bytes()) == before
            steps = c.get("/rightsizing/history", params={"target": target}).json()
            assert [s["state"] for s in steps] == ["proposed", "approved", "applied", "validated", "rolled_back"]
            assert all(s["who"].startswith("api:") for s in steps)
            assert c.post(f"/rightsizing/approve/{pid}", headers=AUTH).status_code == 409


@pytest.mark.slow
@pytest.mark.root
def test_the_validation_baseline_is_taken_before_the_change(paths):
    """The throttling a validation compares with is what the history showed before the change (its p95 over the
    last hour), and the OOM kills counted are the ones so far, read from the cgroup before anything is written."""
    from experiments.rightsizing.engine import Rightsizing

    with real_target("idle") as t:
        target = f"cgroup:{t.cgroup}"
        now = time.time()
        ts = now - 3000 + 60.0 * np.arange(50)
        throttled = np.where(np.arange(50) % 10 == 0, 0.9, 0.4)  # throttled before: 40 %, bursts to 90 %
        UsageStore(paths.usage_db).import_series(
            UsageSeries(target, t=ts, cpu_cores=np.full(50, 0.5), mem_gib=np.full(50, 0.1), throttled_ratio=throttled),
            source="observe")
        eng = Rightsizing(paths, Settings(allowed_targets=[target]))
        p = eng.proposals.create(target=target, profile="balanced", recommendation={"target": target},
                                 values={"rightsize.cpu_cores": 1.0, "rightsize.memory_gib": 1.0})
        watch = eng.before_change(p)
        assert watch.baseline.throttled_ratio == pytest.approx(float(np.percentile(throttled, 95)))
        assert watch.baseline.oom_kills == 0
        assert int(t.file("cpu", "cpu.cfs_quota_us").read_text()) == -1  # nothing written by looking
