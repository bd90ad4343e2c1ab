"""`/profiling` on the real app (TestClient over ``create_app``) and through a real `novatune serve`.

Refusals (fast): writes need the token; a missing pid 404, a refused one 403, a non-Python one 422, bounds and
unknown fields 422, malformed ids 422, unknown ones 404. Real sessions (slow: py-spy on spawned Python
programs, allowed by ``allowed_targets``): a short session completes and its profile is served in all six
formats, as a diff and as hotspots; a long one is stopped by DELETE within seconds with its partial window
kept; status and overhead show the figures; too many sessions or the same pid twice is 409; the app's
shutdown stops what runs. Nothing is left running: py-spy processes are looked up by the pid they name.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest
from fastapi.testclient import TestClient

from benchmarks._readers import protoc_decode, shares_pprof, validate_speedscope
from experiments.service import create_app
from experiments.settings import Paths, Settings
from tests.experiments._profiling_support import (
    IDLE,
    PYTHON_EXE,
    Page,
    gone_pid,
    html_shares,
    json_shares,
    mix_proc,
    own_pyspy,
    spawned,
    svg_shares,
    wait_until,
)

LOCAL = "http://127.0.0.1"  # the Host the guard answers
TOKEN = "unit-token-abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SLEEP_EXE = os.path.realpath("/usr/bin/sleep")
MEDIA = {"svg": "image/svg+xml", "html": "text/html; charset=utf-8", "json": "application/json",
         "speedscope": "application/json", "pprof": "application/octet-stream",
         "collapsed": "text/plain; charset=utf-8"}
UNKNOWN = "0123456789abcdef0123"


def settings(**kw) -> Settings:
    base = {"api_token": TOKEN, "allowed_targets": [f"exe:{PYTHON_EXE}", f"exe:{SLEEP_EXE}"],
            "profiling_window_s": 10.0, "profiling_max_sessions": 2}
    return Settings(**{**base, **kw})


@pytest.fixture()
def paths(tmp_path):
    return Paths(tmp_path / "home").ensure()


@pytest.fixture()
def client(paths):
    with TestClient(create_app(paths, settings()), base_url=LOCAL) as c:
        yield c


@pytest.fixture(scope="module")
def idle_python():
    with spawned([sys.executable, "-c", IDLE]) as proc:
        yield proc


def _wait_done(client: TestClient, sid: str, timeout: float = 30) -> dict:
    return wait_until(lambda: (lambda s: s if s["state"] != "running" else None)(
        client.get(f"/profiling/sessions/{sid}").json()), timeout, f"session {sid} to end", 0.2)


# ====================================================================== refusals (fast)
def test_writes_need_the_token(client, idle_python):
    for method, path, body in (("post", "/profiling/sessions", {"pid": idle_python.pid}),
                               ("delete", "/profiling/sessions/0123456789ab", None)):
        for headers in ({}, {"Authorization": "Bearer wrong-token-0000"}):
            r = client.request(method, path, json=body, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer"), r.text
    assert client.get("/profiling/status").json()["sessions"] == []
    assert own_pyspy(idle_python.pid) == []


def test_a_refused_pid_is_403_naming_the_rule(paths, idle_python):
    only_sleep = settings(allowed_targets=[f"exe:{SLEEP_EXE}"])
    with TestClient(create_app(paths, only_sleep), base_url=LOCAL) as c:
        r = c.post("/profiling/sessions", json={"pid": idle_python.pid}, headers=AUTH)
        assert r.status_code == 403, r.text
        assert "not an allowed target" in r.json()["detail"] and "allowed_targets" in r.json()["detail"]
        r = c.post("/profiling/sessions", json={"pid": 1}, headers=AUTH)
        assert r.status_code == 403 and "never targets" in r.json()["detail"], r.text
        r = c.post("/profiling/sessions", json={"pid": os.getpid()}, headers=AUTH)  # novatune itself
        assert r.status_code == 403, r.text
        assert c.get("/profiling/status").json()["sessions"] == []
    assert own_pyspy(idle_python.pid) == []


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"pid": "gone"}, 404, ["no process has pid"]),
    ({"pid": "sleep"}, 422, ["not a Python process"]),
    ({"pid": "py", "rate_hz": 1000}, 422, ["rate_hz", "less than or equal to 100"]),
    ({"pid": "py", "rate_hz": 1}, 422, ["rate_hz", "greater than or equal to 5"]),
    ({"pid": "py", "duration_s": 0}, 422, ["duration_s"]),
    ({"pid": "py", "duration_s": 100_000}, 422, ["duration_s"]),
    ({"pid": "py", "mode": "idle"}, 422, ["mode", "'cpu' or 'wall'"]),
    ({"pid": "py", "colour": "red"}, 422, ["colour", "Extra inputs are not permitted"]),
    ({"duration_s": 5}, 422, ["pid", "Field required"]),
    ({"pid": 0}, 422, ["pid"]),
    ({"pid": "py", "native": "maybe"}, 422, ["native"]),
])
def test_bad_session_requests(client, idle_python, body, status, words):
    with spawned(["sleep", "30"], ready=None) as sleeper:
        pids = {"gone": gone_pid(), "sleep": sleeper.pid, "py": idle_python.pid}
        body = {k: pids.get(v, v) if k == "pid" and isinstance(v, str) else v for k, v in body.items()}
        r = client.post("/profiling/sessions", json=body, headers=AUTH)
        assert r.status_code == status, r.text
        for word in words:
            assert word in r.text, (word, r.text)
        assert own_pyspy(sleeper.pid, idle_python.pid) == [] and sleeper.poll() is None
    assert client.get("/profiling/status").json()["sessions"] == []
    assert client.get("/profiling/profiles").json() == []


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/profiling/sessions/nope", 422),
    ("delete", "/profiling/sessions/0123456789abc", 422),
    ("get", "/profiling/sessions/0123456789ab", 404),
    ("delete", "/profiling/sessions/0123456789ab", 404),
    ("get", "/profiling/flamegraph/0123", 422),
    ("get", "/profiling/flamegraph/0123456789ABCDEF0123", 422),
    ("get", f"/profiling/flamegraph/{UNKNOWN}", 404),
    ("get", f"/profiling/flamegraph/{UNKNOWN}?format=gif", 422),
    ("get", "/profiling/hotspots/xyz", 422),
    ("get", f"/profiling/hotspots/{UNKNOWN}", 404),
    ("get", f"/profiling/hotspots/{UNKNOWN}?threshold_pct=200", 422),
    ("get", f"/profiling/diff?base={UNKNOWN}&target=x", 422),
    ("get", f"/profiling/diff?base={UNKNOWN}", 422),
    ("get", f"/profiling/diff?base={UNKNOWN}&target={UNKNOWN}", 404),
    ("get", f"/profiling/diff?base={UNKNOWN}&target={UNKNOWN}&format=pprof", 422),
    ("get", "/profiling/profiles?label=session", 422),
    ("get", "/profiling/profiles?limit=0", 422),
])
def test_malformed_ids_are_422_and_unknown_ones_404(client, method, path, status):
    r = client.request(method, path, headers=AUTH)
    assert r.status_code == status, (path, r.text)
    if status == 404:
        assert "no stored profile" in r.text or "no profiling session" in r.text
    if "label=" in path:  # the shape the schema declares for a 422 (detail: [{loc, msg, type}])
        (err,) = r.json()["detail"]
        assert err["loc"] == ["query", "label"] and "KEY=VALUE" in err["msg"] and "'session'" in err["msg"]


def test_status_and_overhead_before_any_session(client):
    s = client.get("/profiling/status").json()
    assert s["running"] == 0 and s["sessions"] == [] and s["budget_pct"] == 1.0
    assert s["window_s"] == 10.0 and s["max_sessions"] == 2 and "store" in s
    assert client.get("/profiling/overhead").json() == []
    assert client.get("/profiling/profiles").json() == []


# ====================================================================== real sessions (slow)
def _check_formats(client: TestClient, pid: str) -> dict[str, float]:
    """Every format of profile ``pid`` through /profiling/flamegraph, each opened by its reader; the self shares
    by function as the SVG shows them."""
    got = {}
    for fmt, media in MEDIA.items():
        r = client.get(f"/profiling/flamegraph/{pid}", params={"format": fmt})
        assert r.status_code == 200 and r.headers["content-type"] == media, (fmt, r.headers)
        assert r.headers["x-content-type-options"] == "nosniff"
        got[fmt] = r.content
    assert gzip.decompress(got["pprof"]) and protoc_decode(got["pprof"])["string_table"][0] == ""
    assert "attachment" in client.get(f"/profiling/flamegraph/{pid}?format=pprof").headers["content-disposition"]
    validate_speedscope(json.loads(got["speedscope"]))
    assert json.loads(got["json"])["version"] == 1
    assert got["collapsed"].decode().startswith("#")  # the metadata header line, then the stacks
    ET.fromstring(got["svg"])
    html = client.get(f"/profiling/flamegraph/{pid}?format=html")
    csp = html.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    page = Page(html.text)
    assert page.external == [] and "script" in page.tags
    default = client.get(f"/profiling/flamegraph/{pid}")  # svg, with its CSP too
    assert default.headers["content-type"] == MEDIA["svg"] and "content-security-policy" in default.headers
    shares = {"svg": svg_shares(got["svg"]), "html": html_shares(got["html"]), "json": json_shares(got["json"])}
    for fmt in ("html", "json"):
        assert shares[fmt]["heavy_a"] == pytest.approx(shares["svg"]["heavy_a"], abs=0.5)
    return shares["svg"]


@pytest.mark.slow
def test_real_sessions_complete_and_are_served_in_every_format_as_a_diff_and_as_hotspots(client, tmp_path):
    with mix_proc(tmp_path, 70) as t70, mix_proc(tmp_path, 30) as t30:
        sids = {}
        for share, target in ((70, t70), (30, t30)):  # side by side: profiling_max_sessions is 2
            r = client.post("/profiling/sessions", json={"pid": target.pid, "duration_s": 2, "rate_hz": 100},
                            headers=AUTH)
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["state"] == "running" and body["pid"] == target.pid and len(body["id"]) == 12
            sids[share] = body["id"]
        status = client.get("/profiling/status").json()
        assert status["running"] == 2 and {s["id"] for s in status["sessions"]} == set(sids.values())
        done = {share: _wait_done(client, sid) for share, sid in sids.items()}
        assert own_pyspy(t70.pid, t30.pid) == [] and t70.poll() is None and t30.poll() is None
    pids = {}
    for share, s in done.items():
        assert s["state"] == "completed" and s["windows"] == 1 and len(s["profiles"]) == 1, s
        listed = client.get("/profiling/profiles", params={"label": f"session={sids[share]}"}).json()
        assert [p["id"] for p in listed] == s["profiles"]
        assert listed[0]["labels"]["source"] == "api" and listed[0]["rate_hz"] == 100
        pids[share] = s["profiles"][0]
    assert len(client.get("/profiling/profiles").json()) == 2
    assert client.get("/profiling/profiles", params={"pid": done[70]["pid"]}).json()[0]["id"] == pids[70]

    shares = _check_formats(client, pids[70])
    assert shares["heavy_a"] == pytest.approx(70, abs=10), shares
    assert shares_pprof_bytes(client.get(f"/profiling/flamegraph/{pids[30]}?format=pprof").content, tmp_path)[
        "heavy_b"] == pytest.approx(70, abs=10)

    d = client.get("/profiling/diff", params={"base": pids[70], "target": pids[30], "format": "json"})
    assert d.status_code == 200 and d.headers["content-type"] == "application/json"
    rows = {r["function"]: r for r in d.json()["functions"]}
    assert rows["heavy_a"]["delta_pct"] < -25 and rows["heavy_b"]["delta_pct"] > 25, rows
    svg = client.get("/profiling/diff", params={"base": pids[70], "target": pids[30]})  # svg by default
    assert svg.headers["content-type"] == "image/svg+xml" and ET.fromstring(svg.content) is not None
    html = client.get("/profiling/diff", params={"base": pids[70], "target": pids[30], "format": "html"})
    assert "default-src 'none'" in html.headers["content-security-policy"] and Page(html.text).external == []

    hot = client.get(f"/profiling/hotspots/{pids[70]}").json()
    assert hot["id"] == pids[70] and hot["mode"] == "cpu" and hot["samples"] > 50 and "hints" in hot
    assert all(list(h) == ["function", "file", "line", "self_pct", "total_pct"] for h in hot["hotspots"])
    assert hot["hotspots"][0]["function"] == "heavy_a"
    assert [h["self_pct"] for h in hot["hotspots"]] == sorted((h["self_pct"] for h in hot["hotspots"]), reverse=True)

    over = {o["id"]: o for o in client.get("/profiling/overhead").json()}
    for sid in sids.values():
        (window,) = over[sid]["windows"]
        assert over[sid]["budget_pct"] == 1.0 and window["profile_id"] in pids.values()
        assert window["rate_hz"] == 100 and window["pyspy_cpu_pct"] > 0 and "est_slowdown_pct" in window
        assert window["samples"] > 50 and 1.5 < window["duration_s"] < 5
    status = client.get("/profiling/status").json()
    assert status["running"] == 0 and all(s["state"] == "completed" for s in status["sessions"])
    assert status["store"]


def shares_pprof_bytes(data: bytes, tmp_path) -> dict[str, float]:
    path = tmp_path / "p.pb.gz"
    path.write_bytes(data)
    return shares_pprof(path)


@pytest.mark.slow
def test_delete_stops_a_long_session_within_seconds_keeping_its_partial_window(client, tmp_path):
    with mix_proc(tmp_path, 70) as target:
        sid = client.post("/profiling/sessions", json={"pid": target.pid, "duration_s": 60}, headers=AUTH).json()["id"]
        wait_until(lambda: own_pyspy(target.pid), 20, "py-spy to start")
        time.sleep(2)
        running = client.get(f"/profiling/sessions/{sid}").json()
        assert running["state"] == "running" and running["window_s"] == 10.0
        t0 = time.monotonic()
        r = client.delete(f"/profiling/sessions/{sid}", headers=AUTH)
        took = time.monotonic() - t0
        assert r.status_code == 200 and took < 5, (r.text, took)
        assert own_pyspy(target.pid) == [] and target.poll() is None
        s = r.json()
        assert s["state"] == "stopped" and s["windows"] == 1 and len(s["profiles"]) == 1, s
        again = client.delete(f"/profiling/sessions/{sid}", headers=AUTH)  # stopping a stopped one: as is
        assert again.status_code == 200 and again.json()["state"] == "stopped"
    (row,) = client.get("/profiling/profiles", params={"label": f"session={sid}"}).json()
    assert row["labels"]["partial"] == "true" and row["labels"]["stopped"] == "true" and row["samples"] > 20
    assert 1 < row["duration_s"] < 10
    (window,) = next(o for o in client.get("/profiling/overhead").json() if o["id"] == sid)["windows"]
    assert window["profile_id"] == row["id"] and {"rate_hz", "pyspy_cpu_pct", "next_rate_hz"} <= set(window)


@pytest.mark.slow
def test_a_target_that_exits_mid_session_ends_it_with_the_window_so_far(client, tmp_path):
    with mix_proc(tmp_path, 70, lifetime_s=3) as short, mix_proc(tmp_path, 70, lifetime_s=3) as long:
        sids = {dur: client.post("/profiling/sessions", json={"pid": p.pid, "duration_s": dur},
                                 headers=AUTH).json()["id"] for dur, p in ((5, short), (60, long))}
        done = {dur: _wait_done(client, sid) for dur, sid in sids.items()}  # one window, then a watch of 10 s ones
        assert own_pyspy(short.pid, long.pid) == []
    for dur, s in done.items():
        assert (s["state"], s["ended"], s["windows"]) == ("completed", "target exited", 1), (dur, s)
        (row,) = client.get("/profiling/profiles", params={"label": f"session={sids[dur]}"}).json()
        assert row["labels"]["partial"] == "true" and 1 < row["duration_s"] < 5 and row["samples"] > 20


def test_too_many_sessions_or_the_same_pid_twice_is_409(client, tmp_path):
    idle = [sys.executable, "-c", IDLE]
    with spawned(idle) as a, spawned(idle) as b, spawned(idle) as c:
        first = client.post("/profiling/sessions", json={"pid": a.pid, "duration_s": 60, "mode": "wall"},
                            headers=AUTH)
        assert first.status_code == 201, first.text
        twice = client.post("/profiling/sessions", json={"pid": a.pid, "duration_s": 60}, headers=AUTH)
        assert twice.status_code == 409 and f"pid {a.pid} is profiled already" in twice.json()["detail"]
        second = client.post("/profiling/sessions", json={"pid": b.pid, "duration_s": 60, "mode": "wall"},
                             headers=AUTH)
        assert second.status_code == 201, second.text
        third = client.post("/profiling/sessions", json={"pid": c.pid, "duration_s": 60}, headers=AUTH)
        assert third.status_code == 409 and "profiling_max_sessions" in third.json()["detail"], third.text
        assert client.get("/profiling/status").json()["running"] == 2
        wait_until(lambda: len(own_pyspy(a.pid, b.pid)) == 2, 20, "both py-spy processes")
        for sid in (first.json()["id"], second.json()["id"]):
            assert client.delete(f"/profiling/sessions/{sid}", headers=AUTH).json()["state"] == "stopped"
        assert own_pyspy(a.pid, b.pid, c.pid) == []
        # a slot is free again
        fourth = client.post("/profiling/sessions", json={"pid": c.pid, "duration_s": 60, "mode": "wall"},
                             headers=AUTH)
        assert fourth.status_code == 201, fourth.text
        client.delete(f"/profiling/sessions/{fourth.json()['id']}", headers=AUTH)
        assert own_pyspy(c.pid) == []


def test_the_apps_shutdown_stops_running_sessions(paths, tmp_path):
    with mix_proc(tmp_path, 70) as target:
        app = create_app(paths, settings())
        with TestClient(app, base_url=LOCAL) as c:
            sid = c.post("/profiling/sessions", json={"pid": target.pid, "duration_s": 600},
                         headers=AUTH).json()["id"]
            wait_until(lambda: own_pyspy(target.pid), 20, "py-spy to start")
            time.sleep(1)
            t0 = time.monotonic()
        took = time.monotonic() - t0  # the lifespan's exit
        assert took < 10 and own_pyspy(target.pid) == [] and target.poll() is None, took
        session = app.state.profiling.get(sid)
        assert session.state == "stopped" and len(session.profiles) == 1
        assert not session.thread.is_alive()


# ====================================================================== through `novatune serve`
@pytest.mark.slow
def test_sessions_flamegraph_hotspots_and_delete_through_novatune_serve(tmp_path):
    import httpx2 as httpx  # the dev extra declares httpx2 (same API)

    from tests.integration.test_api_studies import _health, free_port

    home = tmp_path / "home"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "NOVATUNE_HOME": str(home), "NOVATUNE_API_TOKEN": TOKEN,
           "NOVATUNE_ALLOWED_TARGETS": json.dumps([f"exe:{PYTHON_EXE}"]), "NOVATUNE_PROFILING_WINDOW_S": "10"}
    with mix_proc(tmp_path, 70) as target, mix_proc(tmp_path, 30) as other:
        serve = subprocess.Popen([sys.executable, "-m", "experiments", "serve", "--port", str(port)],
                                 cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: _health(base), 60, "the service to answer", 0.3)
            with httpx.Client(base_url=base, timeout=30) as http:
                assert http.post("/profiling/sessions", json={"pid": target.pid}).status_code == 401
                r = http.post("/profiling/sessions", json={"pid": target.pid, "duration_s": 2}, headers=AUTH)
                assert r.status_code == 201, r.text
                sid = r.json()["id"]
                s = wait_until(lambda: (lambda j: j if j["state"] != "running" else None)(
                    http.get(f"/profiling/sessions/{sid}").json()), 30, "the session", 0.2)
                assert s["state"] == "completed", s
                pid = s["profiles"][0]
                svg = http.get(f"/profiling/flamegraph/{pid}", params={"format": "svg"})
                assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
                assert svg_shares(svg.content)["heavy_a"] == pytest.approx(70, abs=10)
                assert "default-src 'none'" in svg.headers["content-security-policy"]
                hot = http.get(f"/profiling/hotspots/{pid}").json()
                assert hot["hotspots"][0]["function"] == "heavy_a"

                long = http.post("/profiling/sessions", json={"pid": other.pid, "duration_s": 300}, headers=AUTH)
                assert long.status_code == 201, long.text
                wait_until(lambda: own_pyspy(other.pid), 20, "py-spy to start")
                time.sleep(2)
                lid = long.json()["id"]
                assert http.delete(f"/profiling/sessions/{lid}").status_code == 401
                t0 = time.monotonic()
                stopped = http.delete(f"/profiling/sessions/{lid}", headers=AUTH)
                assert stopped.status_code == 200 and time.monotonic() - t0 < 5
                assert stopped.json()["state"] == "stopped" and len(stopped.json()["profiles"]) == 1
                assert own_pyspy(target.pid, other.pid) == []
                listed = http.get("/profiling/profiles", params={"label": f"session={lid}"}).json()
                assert [p["id"] for p in listed] == stopped.json()["profiles"]
        finally:
            serve.send_signal(signal.SIGTERM)
            try:
                _, stderr = serve.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                serve.kill()
                _, stderr = serve.communicate()
        assert serve.returncode == 0, stderr
        assert own_pyspy(target.pid, other.pid) == []
