"""Class 8 (the API) and the API parts of class 11 (token length, the token in logs, `novatune ui`).

The attacks of the issue, each against the real app or a real `novatune serve`:

- a large body was read and parsed before the token was checked, with no size limit: now a
  ``Content-Length`` over ``max_body_bytes`` is 413 before the token is looked at, an unauthenticated
  write is 401 before one byte of its body is read, and a streamed body is cut at the limit -- the
  route never runs;
- a slow or half-open request head held a connection (and a descriptor) for ever; a head had no size
  limit: now both are bounded (408 / 431, the connection closed) and so is the number of connections;
- failed tokens were neither logged nor limited: now each is logged without the token, and an address
  with too many gets 429;
- any Host was answered (a DNS-rebinding page could read the API): now only loopback names, the bind
  address and ``allowed_hosts``;
- ``--host 0.0.0.0`` ran plain HTTP without a word: now refused (exit 2) without TLS or ``--insecure-bind``;
- ``/docs`` loaded its scripts from a CDN: now everything from the service itself;
- a one-character token was accepted and a generated token was printed: now at least 16 characters, and
  only the token file's path is printed;
- ``novatune ui`` could be bound anywhere without a word, with MLflow's Host check at its defaults.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from pydantic import ValidationError

from experiments.service import create_app
from experiments.service.auth import AuthFailures
from experiments.service.serving import InsecureBind, check_bind
from experiments.settings import Paths, Settings, SettingsError, api_token, token_file

REPO = Path(__file__).resolve().parents[2]
TOKEN = "security-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LOCAL = "http://127.0.0.1"


def _app(tmp_path: Path, **settings: Any):
    """The real app over a private data directory, plus a probe route that records every call."""
    app = create_app(Paths(tmp_path / "home"), Settings(api_token=TOKEN, **settings))
    calls: list[bytes] = []

    @app.post("/probe")
    async def probe(request: Request) -> dict[str, int]:
        calls.append(await request.body())
        return {"bytes": len(calls[-1])}

    app.state.probe_calls = calls
    return app


def _asgi(app, *, method: str = "POST", path: str = "/probe", headers: dict[str, str] | None = None,
          chunks: list[bytes] | None = None, complete: bool = True) -> tuple[int, dict[str, str], int]:
    """One request straight through the ASGI interface: (status, response headers, body messages the app
    asked for). ``chunks`` is the body as the server would hand it over; not ``complete``: the client
    stops sending after them, mid-body."""
    chunks = chunks if chunks is not None else [b""]
    asked = 0

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked += 1
        if asked <= len(chunks):
            return {"type": "http.request", "body": chunks[asked - 1],
                    "more_body": asked < len(chunks) or not complete}
        await asyncio.sleep(30)  # a client that stopped sending (never reached: the guard's deadline)
        return {"type": "http.disconnect"}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    head = {"host": "127.0.0.1:8080", **{k.lower(): v for k, v in (headers or {}).items()}}
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "state": {},
             "headers": [(k.encode(), v.encode()) for k, v in head.items()], "client": ("127.0.0.1", 40000),
             "server": ("127.0.0.1", 8080)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, asked


# ------------------------------------------------------------------ limits before auth and parsing
def test_an_oversized_body_is_413_before_the_token_is_looked_at_and_the_route_never_runs(tmp_path, caplog):
    app = _app(tmp_path)
    caplog.set_level(logging.WARNING)
    status, headers, asked = _asgi(app, headers={"content-length": str(100_000_000)}, chunks=[b"x" * 65536])
    assert (status, asked) == (413, 0)  # refused from the head: not one body message read
    assert headers["connection"] == "close"
    assert "refused" not in caplog.text  # before auth: no token was checked, no failure counted
    status, _, asked = _asgi(app, headers={**AUTH, "content-length": str((1 << 20) + 1)})
    assert (status, asked) == (413, 0)  # with the token too
    assert app.state.probe_calls == []


def test_an_unauthenticated_write_is_401_without_its_body_being_read(tmp_path):
    app = _app(tmp_path)
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}):
        status, answer, asked = _asgi(app, headers={**headers, "transfer-encoding": "chunked"},
                                      chunks=[b"{" * 65536] * 4)
        assert (status, asked) == (401, 0), headers
        assert answer["www-authenticate"].startswith("Bearer")
    assert app.state.probe_calls == []
    status, _, _ = _asgi(app, headers=AUTH, chunks=[b'{"a":', b" 1}"])
    assert status == 200 and app.state.probe_calls == [b'{"a": 1}']  # the route gets the whole body


def test_a_streamed_body_is_cut_at_the_limit_and_a_stalled_one_at_the_deadline(tmp_path):
    app = _app(tmp_path, max_body_bytes=256 * 1024, read_timeout_s=1)
    chunk = b"x" * 65536
    status, _, asked = _asgi(app, headers={**AUTH, "transfer-encoding": "chunked"}, chunks=[chunk] * 1600)  # 100 MB
    assert status == 413 and asked == 5  # 4 chunks fit; the fifth passes the limit: nothing more is read
    started = time.monotonic()
    status, _, _ = _asgi(app, headers={**AUTH, "transfer-encoding": "chunked"}, chunks=[chunk, chunk], complete=False)
    assert status == 408 and time.monotonic() - started < 10  # the client stopped sending mid-body
    assert app.state.probe_calls == []


# ------------------------------------------------------------------ Host allow-list (DNS rebinding)
def test_a_host_not_allowed_is_400_and_allowed_hosts_and_the_bind_address_are_answered(tmp_path):
    app = _app(tmp_path, allowed_hosts=["novatune.lan"])
    with TestClient(app, base_url="http://rebind.attacker.example:8080") as c:
        for path in ("/studies", "/healthz", "/settings", "/openapi.json"):
            r = c.get(path)
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"] == "HostNotAllowed" and "rebind.attacker.example" in r.json()["detail"]
            assert "allowed_hosts" in r.json()["detail"]
        assert c.post("/probe", json={}, headers=AUTH).status_code == 400
    assert app.state.probe_calls == []
    for base in ("http://127.0.0.1:8080", "http://localhost:8080", "http://[::1]:8080", "http://novatune.lan"):
        with TestClient(app, base_url=base) as c:
            assert c.get("/studies").status_code == 200, base
    bound = create_app(Paths(tmp_path / "h2"), Settings(api_token=TOKEN), bind_host="10.1.2.3")
    assert TestClient(bound, base_url="http://10.1.2.3:8080").get("/healthz").status_code == 200
    wildcard = create_app(Paths(tmp_path / "h3"), Settings(api_token=TOKEN), bind_host="0.0.0.0")
    assert TestClient(wildcard, base_url="http://0.0.0.0:8080").get("/healthz").status_code == 400
    with pytest.raises(ValidationError, match="bare host names"):
        Settings(allowed_hosts=["http://novatune.lan:8080"])


# ------------------------------------------------------------------ failed tokens: logged, limited
def test_repeated_token_failures_are_logged_without_the_token_then_429(tmp_path, caplog):
    app = _app(tmp_path)
    caplog.set_level(logging.WARNING, logger="experiments.service.auth")
    wrong = "guessed-token-0000000000"
    with TestClient(app, base_url=LOCAL) as c:
        statuses = [c.post("/probe", json={}, headers={"Authorization": f"Bearer {wrong}"}).status_code
                    for _ in range(10)]
        assert statuses == [401] * 10
        blocked = c.post("/probe", json={}, headers={"Authorization": f"Bearer {wrong}"})
        assert blocked.status_code == 429 and blocked.json()["error"] == "TooManyAuthFailures"
        assert 1 <= int(blocked.headers["retry-after"]) <= 60
        assert c.post("/probe", json={}, headers=AUTH).status_code == 429  # the token is not even looked at
        assert c.get("/healthz").status_code == 200  # liveness and open reads stay up
        assert c.get("/studies").status_code == 200
    assert app.state.probe_calls == []
    lines = [r.getMessage() for r in caplog.records]
    refused = [ln for ln in lines if ln.startswith("refused POST /probe from testclient: wrong API token")]
    assert len(refused) == 10, lines
    assert any("10 failed authentications" in ln and "429" in ln for ln in lines), lines
    assert wrong not in caplog.text and TOKEN not in caplog.text


def test_failures_count_within_a_minute_and_a_lockout_ends():
    now = [1000.0]
    failures = AuthFailures(limit=3, lockout_s=30, clock=lambda: now[0])
    assert [failures.failed("10.0.0.1") for _ in range(2)] == [1, 2]
    now[0] += 61  # older failures leave the window
    assert failures.failed("10.0.0.1") == 1 and failures.blocked_for("10.0.0.1") == 0
    failures.failed("10.0.0.1")
    failures.failed("10.0.0.1")
    assert failures.blocked_for("10.0.0.1") == pytest.approx(30) and failures.blocked_for("10.0.0.2") == 0
    now[0] += 31
    assert failures.blocked_for("10.0.0.1") == 0


# ------------------------------------------------------------------ binding beyond loopback
def test_a_non_loopback_bind_needs_tls_or_an_explicit_flag():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert check_bind(host, tls=False, insecure=False) is None, host
    with pytest.raises(InsecureBind, match="refuses to listen on 0.0.0.0 without TLS.*--insecure-bind"):
        check_bind("0.0.0.0", tls=False, insecure=False)
    assert check_bind("0.0.0.0", tls=True, insecure=False) is None
    warning = check_bind("0.0.0.0", tls=False, insecure=True)
    assert warning is not None and "WARNING" in warning and "plain HTTP" in warning


def test_the_server_trusts_no_forwarded_address_and_carries_the_limits(tmp_path):
    from experiments.service.serving import uvicorn_config

    settings = Settings(api_token=TOKEN, read_timeout_s=3, max_header_bytes=2048)
    config = uvicorn_config(_app(tmp_path), settings, max_connections=100, tls=None)
    # X-Forwarded-For from 127.0.0.1 would let a local client pick the address its failures count against
    assert config.proxy_headers is False and config.ws == "none"
    limits = config.http.limits
    assert (limits.read_timeout_s, limits.max_header_bytes, limits.max_connections) == (3, 2048, 100)


def _novatune(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "NOVATUNE_HOME": str(home), **extra}
    for key in ("NOVATUNE_CONFIG", "NOVATUNE_API_TOKEN", "NOVATUNE_HOST", "NOVATUNE_ALLOW_INSECURE_BIND"):
        if key not in extra:
            env.pop(key, None)
    return env


def test_serve_on_a_non_loopback_host_without_tls_exits_2_and_starts_nothing(tmp_path):
    home, port = tmp_path / "home", _free_port()
    for args, extra in ((("--host", "0.0.0.0"), {}), ((), {"NOVATUNE_HOST": "0.0.0.0"})):
        proc = _novatune("serve", "--port", str(port), *args, env=_env(home, **extra))
        assert proc.returncode == 2, proc.stderr
        assert "refuses to listen on 0.0.0.0 without TLS" in proc.stderr and "Traceback" not in proc.stderr
        assert "--insecure-bind" in proc.stderr and "tls_certfile" in proc.stderr
    assert not token_file(Paths(home)).exists()  # refused before the app (and its token) was made
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens
    proc = _novatune("serve", "--port", str(port), env=_env(home, NOVATUNE_TLS_CERTFILE=str(tmp_path / "none.pem")))
    assert proc.returncode == 2 and "tls_keyfile" in proc.stderr, proc.stderr  # half a TLS set-up


# ------------------------------------------------------------------ /docs without a CDN
def test_docs_and_redoc_load_nothing_from_another_host(tmp_path):
    with TestClient(_app(tmp_path), base_url=LOCAL) as c:
        for page in ("/docs", "/redoc"):
            r = c.get(page)
            assert r.status_code == 200 and "default-src 'none'" in r.headers["content-security-policy"]
            assert not re.findall(r"(?:https?:)?//[^\s\"'<>]+", r.text), re.findall(r"https?://\S+", r.text)
            assert "validatorUrl" not in r.text or '"validatorUrl": null' in r.text
            for ref in re.findall(r"(?:src|href)=\"([^\"]+)\"", r.text):
                assert ref.startswith("/docs/assets/"), ref
                asset = c.get(ref)
                assert asset.status_code == 200 and len(asset.content) > 1000, ref
        assert c.get("/docs/assets/../settings").status_code == 404
        assert c.get("/docs/assets/core.py").status_code == 404


# ------------------------------------------------------------------ the token: length, never printed
def test_a_short_token_is_refused_wherever_it_comes_from(tmp_path, monkeypatch):
    with pytest.raises(ValidationError, match="at least 16 characters"):
        Settings(api_token="x")
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("NOVATUNE_API_TOKEN", "tiny-tok")
    with pytest.raises(SettingsError, match="api_token.*at least 16 characters") as err:
        Settings.load()
    assert "tiny-tok" not in str(err.value)
    proc = _novatune("serve", "--port", str(_free_port()), env=_env(tmp_path / "h", NOVATUNE_API_TOKEN="tiny-tok"))
    assert proc.returncode == 2 and "at least 16 characters" in proc.stderr and "tiny-tok" not in proc.stderr
    monkeypatch.delenv("NOVATUNE_API_TOKEN")
    paths = Paths(tmp_path / "home").ensure()
    token_file(paths).write_text("a\n")  # a token file someone wrote by hand (private, as the rule wants)
    token_file(paths).chmod(0o600)
    with pytest.raises(SettingsError, match="holds 1 characters; at least 16"):
        api_token(Settings(), paths)
    assert token_file(paths).read_text() == "a\n"


# ------------------------------------------------------------------ novatune ui
def test_ui_stays_on_loopback_and_turns_on_mlflows_host_check(monkeypatch):
    from experiments import cli
    from experiments.cli import service

    commands: list[list[str]] = []
    monkeypatch.setattr(service, "_run_process_group", lambda cmd: commands.append(cmd) or 0)
    assert cli.main(["ui", "--port", "5999"]) == 0
    cmd = commands[0]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert set(cmd[cmd.index("--allowed-hosts") + 1].split(",")) == {"127.0.0.1:5999", "localhost:5999",
                                                                      "[::1]:5999"}
    assert cmd[cmd.index("--x-frame-options") + 1] == "DENY"
    assert cli.main(["ui", "--host", "0.0.0.0"]) == 2  # refused: no MLflow started
    assert len(commands) == 1


# ------------------------------------------------------------------ a real `novatune serve`: HTTP's own limits
class Served:
    """A `novatune serve` over its own data directory, with small limits (2 s heads, 4 KiB heads, 32
    connections); its stderr is kept in a file."""

    def __init__(self, tmp: Path, **settings: str) -> None:
        self.home, self.port = tmp / "home", _free_port()
        self.log = tmp / "serve.log"
        env = _env(self.home, **{f"NOVATUNE_{k.upper()}": v for k, v in settings.items()})
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen([sys.executable, "-m", "experiments", "serve", "--port", str(self.port)],
                                         cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=f, stderr=f)

    def wait_healthy(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            if self.health()[0] == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"no /healthz within {timeout_s} s: {self.log.read_text()}")

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def health(self) -> tuple[int | None, float]:
        started = time.monotonic()
        try:
            with self.connect() as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                return int(s.recv(64).split(b" ")[1]), time.monotonic() - started
        except (OSError, IndexError, ValueError):
            return None, time.monotonic() - started

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
        return self.log.read_text()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server = Served(tmp_path_factory.mktemp("served"), read_timeout_s="2", max_header_bytes="4096",
                    max_connections="32")
    try:
        server.wait_healthy()
        yield server
    finally:
        server.stop()


def _closed_within(s: socket.socket, timeout_s: float) -> tuple[bytes, float]:
    """What the server sent before closing ``s``, and when it closed (AssertionError: still open)."""
    started = time.monotonic()
    s.settimeout(timeout_s)
    got = b""
    try:
        while more := s.recv(4096):
            got += more
    except TimeoutError:
        raise AssertionError(f"still open after {timeout_s} s (got {got[:80]!r})") from None
    except ConnectionResetError:
        pass
    return got, time.monotonic() - started


@pytest.mark.slow
def test_half_open_and_silent_connections_are_closed_at_the_head_deadline(served):
    partial = [served.connect() for _ in range(10)]
    for s in partial:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
    silent = [served.connect() for _ in range(5)]
    kept = served.connect()  # a kept-alive connection whose second request stalls mid-head
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while not answer.endswith(b"}"):  # the whole first answer (head, then the JSON body)
        answer += kept.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200")
    time.sleep(1)
    kept.sendall(b"GET /healthz HTTP/1.1\r\nHo")
    status, took = served.health()
    assert status == 200 and took < 1  # the held connections cost the others nothing
    for s in (*partial, *silent, kept):
        with s:
            got, _ = _closed_within(s, 5)  # read_timeout_s is 2
            assert got == b"" or got.startswith(b"HTTP/1.1 408"), got[:80]


@pytest.mark.slow
def test_an_oversized_head_is_431_and_connections_past_the_limit_are_503(served):
    with served.connect() as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 8192)
        got, took = _closed_within(s, 5)
        assert got.startswith(b"HTTP/1.1 431") and took < 1.5, got[:80]
    held = [served.connect() for _ in range(32)]  # max_connections open (each closed in 2 s if silent)
    try:
        with served.connect() as extra:
            got, _ = _closed_within(extra, 5)
            assert got.startswith(b"HTTP/1.1 503"), got[:80]
    finally:
        for s in held:
            s.close()
    deadline = time.monotonic() + 5
    while served.health()[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert served.health()[0] == 200


@pytest.mark.slow
def test_the_generated_token_is_never_printed_only_where_it_is(served):
    token = token_file(Paths(served.home)).read_text().strip()
    assert len(token) >= 32
    log = served.log.read_text()
    assert str(token_file(Paths(served.home))) in log.replace("\n", "")
    assert token not in log.replace("\n", "")


@pytest.mark.slow
def test_docs_render_in_a_browser_that_can_reach_no_other_host(served, tmp_path):
    chromium = next(filter(None, (shutil_which(n) for n in ("chromium", "chromium-browser"))), None)
    if chromium is None:
        pytest.skip("chromium is not installed (.ci/run installs it)")
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
         "--disable-background-networking", "--disable-component-update", f"--user-data-dir={tmp_path / 'profile'}",
         # every name but 127.0.0.1 fails to resolve: a CDN script could not load
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--virtual-time-budget=15000",
         "--dump-dom", f"http://127.0.0.1:{served.port}/docs"], capture_output=True, text=True, timeout=120)
    rendered = set(re.findall(r'data-path="([^"]+)"', proc.stdout))  # the operations Swagger UI drew
    assert {"/studies/{study_id}/stop", "/tuning/rollback/{application_id}", "/healthz"} <= rendered, proc.stdout[:500]


def shutil_which(name: str) -> str | None:
    import shutil

    return shutil.which(name)


@pytest.mark.slow
def test_serve_speaks_tls_when_configured_and_the_cli_follows(tmp_path):
    import shutil

    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    server = Served(tmp_path, tls_certfile=str(cert), tls_keyfile=str(key))
    try:
        deadline = time.monotonic() + 60
        env = _env(server.home, NOVATUNE_PORT=str(server.port), NOVATUNE_TLS_CERTFILE=str(cert),
                   NOVATUNE_TLS_KEYFILE=str(key))
        while (health := _novatune("health", env=env)).returncode != 0 and time.monotonic() < deadline:
            assert server.proc.poll() is None, server.log.read_text()
            time.sleep(0.5)
        assert health.returncode == 0 and "ok: novatune" in health.stdout, health.stderr
        assert server.health()[0] is None  # plain HTTP gets no answer
    finally:
        log = server.stop()
    assert f"https://127.0.0.1:{server.port}" in log.replace("\n", "")
