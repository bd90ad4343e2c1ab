"""deploy/ against the real thing: a real Prometheus server, configured from deploy/prometheus/prometheus.yml
(bearer token from a file, the alert rules of deploy/), scrapes a real ``novatune serve`` every second; every
panel query of deploy/grafana/novatune.json then returns data through Prometheus's HTTP API, and the drift
and rollback alerts come up from what the service exposes.

The data directory is made through the real CLI first: a small study, a profile window of a command, an
agent that registers the host and stops (no fleet study), and
``vm.stat_interval`` (harmless for seconds) applied and rolled back, then applied again and changed by hand
(drift). The knob's file is put back whatever happens; serve and Prometheus are killed on every way out.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import REPO, needs_root, novatune, seed_home
from tests.test_deploy_files import AGENT_FAMILIES, PROM, dashboard_exprs

pytestmark = [needs_root, pytest.mark.slow]

KNOB = "vm.stat_interval"
FILE = Path("/proc/sys/vm/stat_interval")
TOKEN = "deploy-observability-test-token-0123456789abcdef"
#: what Grafana puts for the dashboard's variables: every instance
VARIABLES = {"$instance": ".+"}


@dataclass
class Stack:
    home: Path
    serve: str
    prometheus: str
    drifted_app: str
    exposition: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, *, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only, never via a proxy
    try:
        with opener.open(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait(what: str, check: Callable[[], Any], timeout_s: float, *procs: subprocess.Popen[bytes]) -> Any:
    """``check()`` until truthy (its value returned); fails after ``timeout_s`` or when a process ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        for p in procs:
            assert p.poll() is None, f"{p.args[0]} exited with {p.returncode} while waiting for {what}"
        try:
            got = check()
        except OSError:
            got = None
        if got:
            return got
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f} s"
        time.sleep(0.5)


def _query(base: str, expr: str, *, range_s: float | None = None) -> list[dict[str, Any]]:
    """The series ``expr`` returns through Prometheus's HTTP API (a range over the last ``range_s`` seconds)."""
    now = time.time()
    if range_s is None:
        path, args = "/api/v1/query", {"query": expr, "time": f"{now:.3f}"}
    else:
        path, args = "/api/v1/query_range", {"query": expr, "start": f"{now - range_s:.3f}", "end": f"{now:.3f}",
                                             "step": "1"}
    status, body = _get(f"{base}{path}?{urllib.parse.urlencode(args)}")
    doc = json.loads(body)
    assert status == 200 and doc["status"] == "success", f"{expr}: HTTP {status} {doc}"
    return list(doc["data"]["result"])


def _stop(proc: subprocess.Popen[bytes], what: str) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"{what} did not stop within 30 s of SIGTERM")


def _cli(*args: str, home: Path) -> str:
    proc = novatune(*args, home=home, timeout=180)
    assert proc.returncode == 0, f"novatune {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _config(value: int, tmp: Path) -> str:
    path = tmp / f"config-{value}.json"
    path.write_text(json.dumps({"format": "novatune.config/v1", "knobs": {KNOB: value}}))
    return str(path)


def _make_data(home: Path, tmp: Path, old: int) -> str:
    """A study, a profile window, one application rolled back and one applied with its knob changed by hand;
    returns the id of the drifted application."""
    spec = {"name": "deploy-obs", "description": "deploy/ observability test",
            "workload": {"kind": "oltp", "workers": 2, "clients": 4},
            "knobs": {"sizing.vcpus": {"low": 0.3, "high": 2.0}},
            "objectives": {"throughput_rps": "maximize", "cost_usd_per_hour": "minimize"},
            "trial": {"warmup_s": 0.5, "measure_s": 1.0, "repeats": 1},
            "budget": {"trials": 3, "timeout_s": 300}, "sampler": {"name": "random", "seed": 7}}
    (tmp / "spec.yaml").write_text(yaml.safe_dump(spec))
    _cli("study", "run", str(tmp / "spec.yaml"), home=home)
    _cli("profile", "record", "--duration", "2", "-o", str(tmp / "profile.txt"), "--",
         sys.executable, "-c", "while True: sum(range(1000))", home=home)
    new, other = (2, 3) if old not in (2, 3) else (4, 5)
    first = json.loads(_cli("apply", _config(new, tmp), "--json", home=home))["id"]
    _cli("rollback", first, home=home)
    assert int(FILE.read_text()) == old
    second = json.loads(_cli("apply", _config(new, tmp), "--json", home=home))["id"]
    FILE.write_text(f"{other}\n")  # changed by hand after the apply: drift
    # an agent registers this host in the data directory's store and, with no fleet study, stops: a host
    # the agent panels show (stopped, so not alive)
    _cli("--storage", f"sqlite:///{home / 'optuna.db'}", "agent", "--host-id", "deploy-host", "--labels", "role=test",
         "--exit-when-idle", home=home)
    return str(second)


def _start_serve(home: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_API_TOKEN": TOKEN,
           "NOVATUNE_REQUIRE_TOKEN_FOR_READS": "true", "COLUMNS": "200"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "experiments", "serve", "--port", str(port)], cwd=REPO,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def _start_prometheus(binary: str, d: Path, serve: str) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus with deploy/'s config: 1 s intervals, the target and the token file of this test."""
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROM / "novatune-alerts.yml")]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "novatune"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"][0]["targets"] = [serve.removeprefix("http://")]
    (d / "token").write_text(TOKEN)
    job["authorization"]["credentials_file"] = str(d / "token")
    (d / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = _free_port()
    with open(d / "log", "wb") as out:
        proc = subprocess.Popen([binary, f"--config.file={d / 'prometheus.yml'}", f"--storage.tsdb.path={d / 'data'}",
                                 f"--web.listen-address=127.0.0.1:{port}"], cwd=d, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}"


def _prometheus_binary() -> str:
    env = os.environ.get("PROMETHEUS")
    found = env if env and os.access(env, os.X_OK) else shutil.which("prometheus")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("PROMETHEUS is not set and prometheus is not on PATH: .ci/run unpacks Debian's package")
        pytest.skip("prometheus not installed (Debian package 'prometheus' unpacked; or set PROMETHEUS)")
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mlflow_template: Path) -> Iterator[Stack]:
    binary = _prometheus_binary()
    tmp = tmp_path_factory.mktemp("deploy-obs")
    home = seed_home(tmp / "home", mlflow_template)
    original = FILE.read_text()
    procs: list[tuple[subprocess.Popen[bytes], str]] = []
    app = None
    try:
        app = _make_data(home, tmp, int(original.split()[0]))
        serve, serve_url = _start_serve(home, tmp / "serve.log")
        procs.append((serve, "novatune serve"))
        _wait("answer on /healthz", lambda: _get(f"{serve_url}/healthz")[0] == 200, 60, serve)
        assert _get(f"{serve_url}/metrics")[0] == 401  # the token is required: Prometheus must send it
        status, body = _get(f"{serve_url}/metrics", token=TOKEN)
        assert status == 200
        (tmp / "prom").mkdir()
        prom, prom_url = _start_prometheus(binary, tmp / "prom", serve_url)
        procs.append((prom, "prometheus"))
        scrapes = 'count_over_time(up{job="novatune"}[1m])'
        _wait("5 scrapes of novatune serve",
              lambda: (r := _query(prom_url, scrapes)) and float(r[0]["value"][1]) >= 5, 90, serve, prom)
        (up,) = _query(prom_url, 'up{job="novatune"}')
        assert up["value"][1] == "1", (tmp / "prom" / "log").read_text()[-2000:]
        yield Stack(home=home, serve=serve_url, prometheus=prom_url, drifted_app=app, exposition=body.decode())
    finally:
        for proc, what in reversed(procs):
            _stop(proc, what)
        if app is not None:  # the drifted application, unless the alert test rolled it back already
            novatune("rollback", "--force", app, home=home, timeout=120)
        if FILE.read_text() != original:
            FILE.write_text(original)
            pytest.fail(f"{FILE} was left changed; put back {original!r}")


def _expr(expr: str) -> str:
    for var, value in VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


def _panel_queries(*, agent: bool) -> list[tuple[str, str]]:
    return [(t, e) for t, e in dashboard_exprs() if any(n in e for n in AGENT_FAMILIES) == agent]


def test_every_panel_query_returns_data(stack: Stack) -> None:
    empty = []
    queries = _panel_queries(agent=False)
    assert len(queries) >= 15
    for title, expr in queries:
        instant = _query(stack.prometheus, _expr(expr))
        ranged = _query(stack.prometheus, _expr(expr), range_s=30)
        if not instant or not ranged:
            empty.append(f"{title}: {expr} (instant {len(instant)} series, range {len(ranged)})")
    assert empty == [], "panel queries without data:\n" + "\n".join(empty)
    # and the figures are the data directory's
    by = {r["metric"]["reason"]: r["value"][1]
          for r in _query(stack.prometheus, "novatune_changes_rolled_back_total")}
    assert by["requested"] == "1" and by["forced"] == "0"
    states = {r["metric"]["state"]: r["value"][1] for r in _query(stack.prometheus, "novatune_applications")}
    assert states["applied"] == "1" and states["rolled_back"] == "1"
    (front,) = _query(stack.prometheus, 'novatune_study_pareto_front_trials{study="deploy-obs"}')
    assert float(front["value"][1]) >= 1
    (slowdown,) = _query(stack.prometheus, "novatune_profiler_slowdown_ratio")
    assert 0 <= float(slowdown["value"][1]) <= 1


def test_agent_panels_return_data(stack: Stack) -> None:
    queries = _panel_queries(agent=True)
    assert len(queries) == 2
    missing = sorted(n for n in AGENT_FAMILIES if f"# TYPE {n} " not in stack.exposition)
    assert not missing, f"the agent families {missing} are not on /metrics"
    for title, expr in queries:
        assert _query(stack.prometheus, _expr(expr)), f"{title}: {expr} returns no data"


def _alerts(base: str) -> dict[str, dict[str, Any]]:
    status, body = _get(f"{base}/api/v1/alerts")
    assert status == 200
    return {a["labels"]["alertname"]: a for a in json.loads(body)["data"]["alerts"]}


def test_drift_and_rollback_alerts_from_the_live_exposition(stack: Stack) -> None:
    drift = _wait("NovatuneDrift pending", lambda: _alerts(stack.prometheus).get("NovatuneDrift"), 30)
    assert drift["state"] == "pending" and drift["labels"]["severity"] == "warning"  # held 10 min before firing
    assert "NovatuneChangeRolledBack" not in _alerts(stack.prometheus)  # the stored rollback is not a new one
    _cli("rollback", "--force", stack.drifted_app, home=stack.home)  # while Prometheus watches
    fired = _wait("NovatuneChangeRolledBack firing",
                  lambda: (a := _alerts(stack.prometheus).get("NovatuneChangeRolledBack")) and a["state"] == "firing"
                  and a, 30)
    assert fired["labels"]["reason"] == "forced"
    _wait("NovatuneDrift gone", lambda: "NovatuneDrift" not in _alerts(stack.prometheus), 30)
