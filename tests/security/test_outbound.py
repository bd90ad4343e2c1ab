"""Class 9: outbound requests. A passive ``probe_url`` / ``scrape_url`` reached any host (its docstring said
loopback only), followed redirects anywhere, and the first line of the answer (a status line, the
parser's quote of a body line) landed in failure reasons that anyone may read without a token.

The rule now (:mod:`collectors.passive.http_probe`): http(s) to a loopback address (127.0.0.0/8, ::1,
``localhost`` resolving to loopback only) or to a host in ``allowed_probe_hosts``; refused when the spec
is validated (exit 2 / 422 naming the URL and the rule); every resolved address checked and the
connection made to a checked one; no redirect followed; failure reasons carry the status code or the
exception class and the OS's short message, never the server's text.

Servers here listen on 127.0.0.1 only. Addresses off the host (TEST-NET 192.0.2.0/24) appear only
where they are refused before any connection, which an audit hook on ``socket.connect`` proves.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient

from collectors.errors import CollectorError, WorkloadError
from collectors.passive.allowed import PassivePolicy
from collectors.passive.http_probe import check_url, fetch, probe
from collectors.passive.scrape import scrape
from collectors.passive.target import PassiveWorkload
from experiments.service import create_app
from experiments.settings import Paths, Settings, SettingsError
from experiments.spec import SpecError, parse_spec
from experiments.study.prepare import prepare

REPO = Path(__file__).resolve().parents[2]
SECRET = "hunter2-SECRET-7f3a"
OFF_HOST = "192.0.2.1"  # TEST-NET-1: never reachable, and never attempted here
TOKEN = "security-outbound-token"

# ------------------------------------------------------------------ every connect() this process makes
_CONNECTS: list[Any] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect":
        _CONNECTS.append(args[1])


sys.addaudithook(_audit)  # an audit hook cannot be removed: it only records, into a list the tests read


@pytest.fixture
def connects() -> Iterator[list[Any]]:
    """The addresses ``socket.connect`` is called with during the test."""
    _CONNECTS.clear()
    yield _CONNECTS


def _off_host(addresses: list[Any]) -> list[Any]:
    return [a for a in addresses if isinstance(a, tuple) and a and a[0] not in ("127.0.0.1", "::1")]


@pytest.fixture(autouse=True)
def _private_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    for var in ("NOVATUNE_CONFIG", "NOVATUNE_ALLOWED_TARGETS", "NOVATUNE_ALLOWED_PROBE_HOSTS"):
        monkeypatch.delenv(var, raising=False)


class _Leaky(http.server.BaseHTTPRequestHandler):
    """Answers every way a server can put text into a failure reason: a 500 whose reason phrase, header and
    body carry the secret; a redirect off the host; a status line that is the secret; a 200 body that is
    not an exposition; a good exposition."""

    def _reply(self, code: int, body: bytes, reason: str | None = None,
               headers: tuple[tuple[str, str], ...] = ()) -> None:
        self.send_response(code, reason)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/fail":
            self._reply(500, f"internal error: {SECRET}\n".encode(), f"Broken {SECRET}", (("X-Debug", SECRET),))
        elif self.path == "/redirect":
            self._reply(302, b"", headers=(("Location", f"http://{OFF_HOST}/metrics"),))
        elif self.path == "/garbage":
            self.wfile.write(f"{SECRET} this is not HTTP\r\n\r\n".encode())
        elif self.path == "/notmetrics":
            self._reply(200, f"{{ not metrics {SECRET}\n".encode())
        else:
            self._reply(200, b"# TYPE app_requests_total counter\napp_requests_total 5\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def leaky() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Leaky)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
    th.join(5)


def _passive_spec(**workload: object) -> dict[str, object]:
    return {"name": "outbound", "workload": {"kind": "passive", **workload},
            "knobs": {"vm.swappiness": {"low": 1, "high": 100}}, "objectives": {"latency_p95_ms": "minimize"}}


# ------------------------------------------------------------------ refused before any connection
@pytest.mark.parametrize("url", [
    f"http://{OFF_HOST}/metrics",
    f"http://127.0.0.1@{OFF_HOST}/",  # user info: the host is the part after '@'
    "http://example.com/",
    "http://localhost.example.com/",
    f"http://[::ffff:{OFF_HOST}]/",
    "http://0x7f000001/",
    "http://2130706433/",
    "file:///etc/shadow",
    "gopher://127.0.0.1:70/",
])
def test_a_url_off_loopback_is_refused_when_the_spec_is_validated(url: str, tmp_path: Path,
                                                                  connects: list[Any]) -> None:
    for field in ("probe_url", "scrape_url"):
        extra = {"throughput_counter": "x_total"} if field == "scrape_url" else {}
        spec = parse_spec(_passive_spec(**{field: url, **extra}))
        with pytest.raises(SpecError) as err:
            prepare(spec, paths=Paths(tmp_path / "home"))
        msg = str(err.value)
        assert f"{field} must be http(s)://HOST[:PORT]/PATH where HOST is a loopback address" in msg
        assert "allowed_probe_hosts" in msg and repr(url) in msg
    for call in (lambda: probe(url, count=1), lambda: scrape(url), lambda: fetch(url, timeout_s=1)):
        with pytest.raises(CollectorError, match="loopback"):
            call()
    assert connects == []


def test_the_cli_and_the_api_refuse_an_off_host_probe_with_exit_2_and_422(tmp_path: Path) -> None:
    spec = _passive_spec(probe_url=f"http://{OFF_HOST}:8080/health")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    proc = subprocess.run([sys.executable, "-m", "experiments", "study", "run", str(tmp_path / "spec.yaml")],
                          cwd=REPO, env={**os.environ, "COLUMNS": "400"}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "probe_url must be http(s)" in proc.stderr and OFF_HOST in proc.stderr
    assert "Traceback" not in proc.stderr
    app = create_app(Paths(tmp_path / "api").ensure(), Settings(api_token=TOKEN))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        r = client.post("/studies", json=spec, headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 422 and any("loopback" in p for p in r.json()["problems"]), r.text


def test_localhost_must_resolve_to_loopback_only(monkeypatch: pytest.MonkeyPatch, connects: list[Any]) -> None:
    real = socket.getaddrinfo

    def rebound(host: Any, *args: Any, **kwargs: Any) -> Any:  # DNS (or /etc/hosts) pointing localhost off-host
        if host == "localhost":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80)),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", (OFF_HOST, 80))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebound)
    with pytest.raises(CollectorError, match=f"localhost resolves to {OFF_HOST}, not loopback only"):
        fetch("http://localhost/metrics", timeout_s=1)
    assert probe("http://localhost/", count=1).errors == 1
    assert connects == []


def test_an_operator_allowed_host_passes_validation_and_nothing_else_does(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check_url(f"http://{OFF_HOST}:9100/metrics", allowed_hosts=(OFF_HOST,)).allowed_host
    with pytest.raises(CollectorError):
        check_url("http://192.0.2.2/", allowed_hosts=(OFF_HOST,))
    monkeypatch.setenv("NOVATUNE_ALLOWED_PROBE_HOSTS", json.dumps([OFF_HOST, "Metrics.Internal"]))
    settings = Settings.load()
    assert settings.allowed_probe_hosts == [OFF_HOST, "metrics.internal"]
    PassiveWorkload(probe_url="http://metrics.internal/health",
                    policy=PassivePolicy.of(allowed_probe_hosts=settings.allowed_probe_hosts))  # not connected
    monkeypatch.setenv("NOVATUNE_ALLOWED_PROBE_HOSTS", '["*"]')
    with pytest.raises(SettingsError, match="allowed_probe_hosts: .*not a host name"):
        Settings.load()


# ------------------------------------------------------------------ no redirect followed
def test_a_redirect_off_the_host_is_not_followed(leaky: str, connects: list[Any]) -> None:
    status, _ = fetch(f"{leaky}/redirect", timeout_s=2)
    assert status == 302
    with pytest.raises(CollectorError, match=r"HTTP 302 \(redirects are not followed\)"):
        scrape(f"{leaky}/redirect")
    wl = PassiveWorkload(scrape_url=f"{leaky}/redirect", throughput_counter="app_requests_total")
    with pytest.raises(WorkloadError, match="HTTP 302"):
        wl.start()
    m = PassiveWorkload(probe_url=f"{leaky}/redirect", probe_interval_s=0.05).measure(warmup_s=0, measure_s=0.3)
    assert m.metrics["probe_requests"] >= 1  # answered (a 3xx), and not followed
    assert connects and _off_host(connects) == []


# ------------------------------------------------------------------ nothing a server sent in a reason
def test_failure_reasons_never_carry_what_the_server_sent(leaky: str, connects: list[Any]) -> None:
    reasons: list[str] = []
    r = probe(f"{leaky}/fail", count=2, duration_s=5)
    assert r.errors == 2 and r.last_error == "HTTP 500"
    r = probe(f"{leaky}/garbage", count=1, duration_s=5)
    assert r.errors == 1 and r.last_error == "BadStatusLine"  # the status line was the secret
    reasons.append(str(r.last_error))
    for path in ("/fail", "/garbage", "/notmetrics"):
        with pytest.raises(CollectorError) as err:
            scrape(f"{leaky}{path}")
        reasons.append(str(err.value))
    for path in ("/garbage",):
        with pytest.raises(WorkloadError) as werr:
            PassiveWorkload(probe_url=f"{leaky}{path}").start()
        reasons.append(str(werr.value))
    for path in ("/fail", "/garbage"):
        m = PassiveWorkload(probe_url=f"{leaky}{path}", probe_interval_s=0.05).measure(warmup_s=0, measure_s=0.3)
        assert m.metrics["probe_errors"] >= 1
        reasons.extend(m.notes)
    for path in ("/fail", "/garbage", "/notmetrics"):
        m = PassiveWorkload(scrape_url=f"{leaky}{path}", throughput_counter="app_requests_total"
                            ).measure(warmup_s=0, measure_s=0.2)
        reasons.extend(m.notes)
    text = "\n".join(reasons)
    assert "HTTP 500" in text and "BadStatusLine" in text and "not Prometheus text exposition" in text
    assert SECRET not in text and "Broken" not in text and "not HTTP" not in text, text
    assert _off_host(connects) == []
