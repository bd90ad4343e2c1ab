"""``novatune serve``, ``health``, ``settings show|set`` and ``ui``: running the service (the CLI twin
of ``/healthz`` and ``/settings``) and the MLflow UI.

``health`` and ``settings show --live|set`` talk to the running service with the API token;
``serve`` and ``ui`` run in the foreground until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from experiments.cli._common import JsonOpt, UserError, err, out
from experiments.cli._common import paths as _paths
from experiments.cli._common import print_json as _print_json
from experiments.cli._common import settings as _settings

__all__ = ["health_cmd", "serve", "settings_app", "ui"]

settings_app = typer.Typer(no_args_is_help=True, help="Show settings; change safe ones in the running service.")


# -------------------------------------------------------------------- serve
class _Stopped(Exception):
    """SIGTERM after uvicorn's graceful shutdown: a normal stop (exit 0)."""


def _listen_socket(host: str, port: int) -> socket.socket:
    """A bound socket for ``host:port`` (uvicorn listens on it).

    Raises:
        UserError: ``host`` does not resolve, or the port cannot be bound (taken: the message says so).
    """
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise UserError(f"--host {host!r}: not an address this machine can bind ({e.strerror})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn; a live listener still refuses
        sock.bind(addr)
    except OSError as e:
        sock.close()
        hint = "; choose another --port or stop the process using it" if e.errno == errno.EADDRINUSE else ""
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    return sock


InsecureBindOpt = Annotated[bool, typer.Option(
    "--insecure-bind", help="allow a non-loopback --host without TLS (plain HTTP; a loud warning is printed)")]


def serve(
    host: Annotated[str | None, typer.Option(help="address to bind (default 127.0.0.1; another one needs TLS "
                                                     "(tls_certfile/tls_keyfile) or --insecure-bind)")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="TCP port (default 8080)")] = None,
    insecure_bind: InsecureBindOpt = False,
) -> None:
    """Run the HTTP API: studies in the background, exports, apply/rollback, /metrics; OpenAPI at /docs."""
    from experiments.service import create_app
    from experiments.service.serving import check_bind, raise_fd_limit, tls_files, uvicorn_config

    paths = _paths().ensure()
    settings = _settings()
    host = host or settings.host
    port = port or settings.port
    tls = tls_files(settings)
    sock = _listen_socket(host, port)  # before building the app: a taken port fails fast and clearly
    try:
        # the address actually bound decides (a name is resolved once, here)
        warning = check_bind(sock.getsockname()[0], tls=tls is not None,
                             insecure=insecure_bind or settings.allow_insecure_bind)
        app_ = create_app(paths, settings, bind_host=host)
        config = uvicorn_config(app_, settings, max_connections=raise_fd_limit(settings.max_connections), tls=tls)
        if warning:
            err.print(f"[bold red]{escape(warning)}[/]")
        _say_where_the_token_is(app_.state.token_source, paths)
        shown = f"[{host}]" if ":" in host else host
        err.print(f"novatune serving on {'https' if tls else 'http'}://{shown}:{port} (API docs /docs, metrics "
                  f"/metrics); data in {paths.home}")
        _run(config, sock)
    finally:
        sock.close()


def _say_where_the_token_is(source: str, paths: Any) -> None:
    """Where a client finds the API token (never the token itself: a terminal or a log keeps it)."""
    from experiments.settings import token_file

    if source == "generated":
        err.print(f"API token: generated into {token_file(paths)} (mode 0600); clients send it as "
                  "'Authorization: Bearer <token>' (the novatune CLI reads it from there)")
    elif source == "setting":
        err.print("API token: from NOVATUNE_API_TOKEN / the settings file")
    else:
        err.print(f"API token: in {source}")


def _run(config: Any, sock: socket.socket) -> None:
    """Run uvicorn on ``sock`` until SIGTERM (exit 0) or Ctrl-C (exit 130)."""
    import signal

    import uvicorn

    server = uvicorn.Server(config)

    def stopped(_signum: int, _frame: Any) -> None:
        raise _Stopped

    # uvicorn handles SIGTERM itself (graceful shutdown), then re-raises it: land here, exit 0
    try:
        old = signal.signal(signal.SIGTERM, stopped)
    except ValueError:  # not the main thread: uvicorn does not handle signals either
        old = None
    try:
        server.run(sockets=[sock])
    except _Stopped:
        pass
    except KeyboardInterrupt:
        err.print("stopped")
        raise typer.Exit(130) from None
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


# ------------------------------------------------------- settings and health
def _api(method: str, path: str, body: Any = None) -> Any:
    """One request to the running service (host/port from the settings), with the API token.

    Raises:
        UserError: the service answered an error (its status and detail), or cannot be reached.
    """
    import urllib.error
    import urllib.request

    from experiments.settings import api_token

    settings = _settings()
    token, _ = api_token(settings, _paths())
    url = f"{_base_url(settings)}{path}"
    req = urllib.request.Request(url, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    context = None
    if settings.tls_certfile is not None:  # HTTPS, verified against the service's own certificate
        import ssl

        context = ssl.create_default_context(cafile=str(settings.tls_certfile))
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as r:  # the configured host
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            detail = json.loads(e.read()).get("detail")
        except ValueError:
            detail = e.reason
        raise UserError(f"{method} {path}: {e.code}: {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        raise UserError(f"cannot reach the service at {url}: {e}; is `novatune serve` running?") from None


def _is_wildcard(host: str) -> bool:
    """Whether ``host`` is an any-address (0.0.0.0, ::)."""
    import ipaddress

    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:  # a name
        return False


def _base_url(settings: Any) -> str:
    """The service's URL from the settings (a wildcard bind is reached on loopback)."""
    host = settings.host
    if _is_wildcard(host):
        host = "::1" if ":" in host else "127.0.0.1"
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    return f"{'https' if settings.tls_certfile is not None else 'http'}://{shown}:{settings.port}"


@settings_app.command("show")
def settings_show(
    as_json: JsonOpt = False,
    live: Annotated[bool, typer.Option("--live", help="ask the running service (GET /settings)")] = False,
) -> None:
    """The settings: NOVATUNE_* variables, then the config file, then defaults (the token is never shown)."""
    from experiments.settings import RUNTIME_SETTINGS, config_file

    if live:
        data = _api("GET", "/settings")
    else:
        s = _settings()
        data = {**s.model_dump(mode="json", exclude={"api_token"}),
                "api_token": "set" if s.api_token else "not set (generated by `novatune serve`)",
                "config_file": str(config_file()), "runtime_changeable": list(RUNTIME_SETTINGS)}
    if as_json:
        _print_json(data)
        return
    for k, v in data.items():
        out.print(f"[bold]{k}[/]: {escape(str(v))}", highlight=False)


@settings_app.command("set")
def settings_set(
    pairs: Annotated[list[str], typer.Argument(metavar="KEY=VALUE...", help="e.g. max_running_studies=1")],
    as_json: JsonOpt = False,
) -> None:
    """Change safe settings in the running service (PATCH /settings); not persisted across restarts."""
    from experiments.settings import RUNTIME_SETTINGS

    body: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in RUNTIME_SETTINGS:
            raise UserError(f"{pair!r}: expected KEY=VALUE with KEY one of {', '.join(RUNTIME_SETTINGS)}")
        body[key] = value
    data = _api("PATCH", "/settings", body)
    if as_json:
        _print_json(data)
    else:
        out.print("; ".join(f"{k}={data[k]}" for k in body))


def health_cmd(
    as_json: JsonOpt = False,
    wait: Annotated[float, typer.Option("--wait", min=0, max=3600, metavar="SECONDS",
                                        help="keep asking until the service answers (e.g. right after "
                                             "`novatune serve &`); exit 2 if it does not within SECONDS")] = 0,
) -> None:
    """Ask the running service whether it answers (GET /healthz)."""
    import time

    deadline = time.monotonic() + wait
    while True:
        try:
            data = _api("GET", "/healthz")
            break
        except UserError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.25)
    if as_json:
        _print_json(data)
    else:
        out.print(f"{data['status']}: novatune {data['version']}, data in {data['data_dir']}")


# --------------------------------------------------------------- MLflow UI
def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the live (non-zombie) members of process group ``pgid`` (0: only look);
    False when none is left."""
    import psutil

    alive = False
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) != pgid or p.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            alive = True
            if sig:
                os.kill(p.pid, sig)
        except (ProcessLookupError, psutil.Error):
            continue
    return alive


def _run_process_group(cmd: list[str], *, grace_s: float = 10.0) -> int:
    """Run ``cmd`` as the leader of its own process group and stay its only way in and out: SIGINT,
    SIGTERM and SIGHUP sent to us go to the whole group, the group dies with us (a ``kill -9`` of this
    process sends it SIGTERM), and whatever of the group outlives its leader (MLflow's job consumers,
    uvicorn workers) is ended before we return. Returns the leader's exit code."""
    import signal
    import subprocess
    import time

    from collectors.workloads._proc import set_parent_death_signal

    me = os.getpid()

    def in_child() -> None:
        set_parent_death_signal(signal.SIGTERM, expected_parent=me)

    # `novatune ui` has started no thread when it forks, and the child only calls prctl before exec
    # cwd "/": nothing in the directory `novatune ui` was started from is on MLflow's import path
    proc = subprocess.Popen(cmd, start_new_session=True, preexec_fn=in_child, cwd="/")  # noqa: PLW1509 - see above

    def forward(signum: int, _frame: Any) -> None:
        _signal_group(proc.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        rc = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in (signal.SIGTERM, signal.SIGKILL):  # what outlived the leader
            if not _signal_group(proc.pid, sig):
                break
            deadline = time.monotonic() + grace_s
            while _signal_group(proc.pid, 0) and time.monotonic() < deadline:
                time.sleep(0.1)
    return rc


def ui(
    port: Annotated[int, typer.Option(min=1, max=65535)] = 5000,
    host: Annotated[str, typer.Option(help="address to bind (default 127.0.0.1; MLflow's UI has no auth here: "
                                           "another address needs --insecure-bind)")] = "127.0.0.1",
    insecure_bind: InsecureBindOpt = False,
) -> None:
    """Open the MLflow UI on the local store (127.0.0.1). Stopping novatune (Ctrl-C, SIGTERM) stops it all.

    MLflow's own guards are on: only the Host names of this bind are answered (DNS rebinding), only
    its own origins may send state-changing cross-origin requests, and no page may frame it. It has
    no login: every local user can read (and, through MLflow's REST API, change) the studies' records.
    """
    import shutil

    from experiments.service.serving import check_bind

    warning = check_bind(host, tls=False, insecure=insecure_bind, what="novatune ui", tls_possible=False)
    paths = _paths()
    exe = shutil.which("mlflow") or sys.executable
    cmd = [exe] if exe.endswith("mlflow") else [exe, "-P", "-m", "mlflow"]
    shown = f"[{host.strip('[]')}]" if ":" in host else host
    cmd += ["ui", "--backend-store-uri", paths.mlflow_uri, "--default-artifact-root", paths.artifacts.as_uri(),
            "--host", host, "--port", str(port), "--x-frame-options", "DENY"]
    if not _is_wildcard(host):  # a wildcard bind keeps MLflow's own list (localhost and private addresses)
        names = list(dict.fromkeys(f"{n}:{port}" for n in ("127.0.0.1", "localhost", "[::1]", shown)))
        cmd += ["--allowed-hosts", ",".join(names),
                "--cors-allowed-origins", ",".join(f"http://{n}" for n in names)]
    from experiments.settings import mlflow_ui_url

    if warning:
        err.print(f"[bold red]{escape(warning)}[/] (MLflow's UI has no login here)")
    err.print("running: " + " ".join(cmd), highlight=False, soft_wrap=True)
    err.print(f"open {mlflow_ui_url(base=f'http://{shown}:{port}')} (novatune's studies are in MLflow's "
              "'Model training' view); Ctrl-C stops it", highlight=False, soft_wrap=True)
    raise typer.Exit(_run_process_group(cmd))
