"""Load benchmark of the study reads while a study runs (not a test).

Requirement: ``GET /studies`` and ``GET /studies/{id}`` keep p99 <= 50 ms with
50 concurrent clients on 127.0.0.1 while a study runs.

What it does, every step bounded in time:

1. starts the real service, ``python -m experiments serve --port P``, over a
   new temporary data directory (``NOVATUNE_HOME``, ``NOVATUNE_API_TOKEN``) and
   waits for ``/healthz``;
2. launches a real study (``POST /studies``: the OLTP workload, ``vm.swappiness``
   and ``sizing.vcpus``, enough trials to outlast the load) and waits until it
   is ``running``;
3. runs ``wrk`` (keep-alive connections, 127.0.0.1): ``--clients`` split in
   two halves, one on ``GET /studies`` and one on ``GET /studies/{id}``, each
   ``wrk -t1`` so the load generator takes no more CPU than ``wrk -t2``.
   Each wrk reports its latency percentiles (Lua ``done``); the overall figure
   merges the two distributions (weighted by requests, from 1000 quantiles);
4. polls the study's state once a second during the load: the figure counts
   only if the study stayed ``running`` throughout;
5. stops the study (``POST /studies/{id}/stop``), stops the server (SIGTERM),
   removes the data directory; with ``/work/shared/tools/knob-snapshot`` present,
   compares the kernel knobs before and after.

Prints one summary line and exits 1 when the target is missed (or the study
did not run throughout, or a request failed); ``--json`` prints a JSON document.

    python benchmarks/api_load.py [--seconds 20] [--clients 50] [--json]

Needs root (the study tunes this machine's knobs, journaled and restored) and ``wrk``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

# ``python benchmarks/<name>.py`` puts benchmarks/ first on sys.path; the shared helper is imported by its
# package name from the checkout's root, so no top-level module named ``_service`` exists anywhere
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks._service import BenchError, finish, free_port, start_serve, stop_serve

#: the shared tool beside the checkout (as .ci/run finds it), else the workplace copy
KNOB_SNAPSHOT = next((p for p in (Path(__file__).resolve().parents[1].parent / "shared/tools/knob-snapshot",
                                  Path("/work/shared/tools/knob-snapshot")) if p.exists()),
                     Path("/work/shared/tools/knob-snapshot"))

STUDY = {
    "name": "load",
    "workload": {"kind": "oltp", "workers": 2, "clients": 4},
    "knobs": {"sizing.vcpus": {"low": 0.2, "high": 2.0}, "vm.swappiness": {"low": 1, "high": 100}},
    "objectives": {"throughput_rps": "maximize", "cost_usd_per_hour": "minimize"},
    "trial": {"warmup_s": 0.5, "measure_s": 1.0, "repeats": 1},
    "budget": {"trials": 3, "timeout_s": 120},
    "sampler": {"name": "random", "seed": 3},
}

#: wrk's Lua side: the Authorization header, and one JSON line of statistics at the end
WRK_LUA = r"""
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer %(token)s"
wrk.headers["Connection"] = "keep-alive"

function done(summary, latency, requests)
  local q = {}
  for i = 0, 1000 do
    q[#q + 1] = latency:percentile(i / 10.0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %%d, "duration_us": %%d, "bytes": %%d, "connect_errors": %%d, "read_errors": %%d, ' ..
    '"write_errors": %%d, "status_errors": %%d, "timeouts": %%d, "mean_us": %%f, "max_us": %%d, ' ..
    '"quantiles_us": [%%s]}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, table.concat(q, ",")))
end
"""


# ------------------------------------------------------------------ http
def _request(base: str, method: str, path: str, *, token: str | None = None, body: Any = None,
             timeout: float = 10.0) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as err:
        raw, status = err.read(), err.code
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def _wait(what: str, timeout_s: float, probe, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            ok, last = probe()
            if ok:
                return last
        except (OSError, urllib.error.URLError) as err:
            last = err
        time.sleep(interval_s)
    raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------ stats
def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One latency distribution from several wrk runs (each: 1001 quantiles 0..100 %, weighted by requests)."""
    samples: list[tuple[float, float]] = []
    for p in parts:
        q = p["quantiles_us"]
        w = p["requests"] / max(len(q), 1)
        samples += [(v, w) for v in q]
    samples.sort()
    total = sum(w for _, w in samples)

    def pct(x: float) -> float:
        acc = 0.0
        for v, w in samples:
            acc += w
            if acc >= total * x / 100.0:
                return v / 1000.0
        return samples[-1][0] / 1000.0 if samples else float("nan")

    requests = sum(p["requests"] for p in parts)
    return _figures(requests=requests, duration_us=max(p["duration_us"] for p in parts),
                    errors=sum(_errors(p) for p in parts),
                    mean_ms=sum(p["mean_us"] * p["requests"] for p in parts) / max(requests, 1) / 1000.0,
                    p50=pct(50), p90=pct(90), p99=pct(99), p999=pct(99.9),
                    max_ms=max(p["max_us"] for p in parts) / 1000.0)


def _errors(p: dict[str, Any]) -> int:
    return sum(p[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))


def _one(p: dict[str, Any]) -> dict[str, Any]:
    q = p["quantiles_us"]
    return _figures(requests=p["requests"], duration_us=p["duration_us"], errors=_errors(p),
                    mean_ms=p["mean_us"] / 1000.0, p50=q[500] / 1000.0, p90=q[900] / 1000.0,
                    p99=q[990] / 1000.0, p999=q[999] / 1000.0, max_ms=p["max_us"] / 1000.0)


def _figures(*, requests: int, duration_us: int, errors: int, mean_ms: float, p50: float, p90: float, p99: float,
             p999: float, max_ms: float) -> dict[str, Any]:
    return {"requests": requests, "rps": round(requests / max(duration_us / 1e6, 1e-9), 1), "errors": errors,
            "mean_ms": round(mean_ms, 2), "p50_ms": round(p50, 2), "p90_ms": round(p90, 2),
            "p99_ms": round(p99, 2), "p99_9_ms": round(p999, 2), "max_ms": round(max_ms, 2)}


# ------------------------------------------------------------------ the run
def _snapshot(out: Path) -> bool:
    if not KNOB_SNAPSHOT.exists():
        return False
    with open(out, "w") as f:
        subprocess.run([sys.executable, str(KNOB_SNAPSHOT)], stdout=f, check=True, timeout=60)
    return True


def _snapshot_diff(before: Path) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, str(KNOB_SNAPSHOT), "--diff", str(before)],
                          check=False, capture_output=True, text=True, timeout=60)
    lines = proc.stdout.strip().splitlines()
    return {"differences": [ln for ln in lines if ln.startswith("CHANGED")], "summary": lines[-1] if lines else ""}


def _journal_check(path: Path) -> dict[str, Any]:
    """This run's own journal: every knob applied was restored, every cgroup it created was released (the
    machine-wide snapshot cannot tell this run's changes from those of other runs on a shared machine)."""
    from collections import Counter

    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {"entries": 0, "balanced": True}
    c = Counter()
    for ln in lines:
        try:
            e = json.loads(ln)
        except ValueError:
            continue
        event = e.get("event")
        c[f"{event} cgroup" if e.get("kind") == "cgroup" else event] += 1
    out = {"entries": len(lines), "applied": c["applied"], "restored": c["restored"], "created": c["created cgroup"],
           "released": c["released cgroup"], "runs_begun": c["begin"], "runs_ended": c["end"]}
    out["balanced"] = (c["applied"] == c["restored"] and c["created cgroup"] == c["released cgroup"]
                       and c["begin"] == c["end"])
    return out


def _run_wrk(args: argparse.Namespace, base: str, token: str, study: str, workdir: Path) -> dict[str, Any]:
    script = workdir / "load.lua"
    script.write_text(WRK_LUA % {"token": token})
    halves = {"GET /studies": "/studies", "GET /studies/{id}": f"/studies/{study}"}
    clients = [args.clients // 2, args.clients - args.clients // 2]
    procs = {}
    for (label, path), c in zip(halves.items(), clients):
        cmd = ["wrk", "-t1", f"-c{c}", f"-d{args.seconds}s", "--timeout", "5s", "-s", str(script), base + path]
        procs[label] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    results = {}
    for label, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=args.seconds + 30)
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            raise BenchError(f"wrk ({label}) did not finish in {args.seconds + 30} s") from None
        line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
        if proc.returncode != 0 or line is None:
            raise BenchError(f"wrk ({label}) failed (exit {proc.returncode}):\n{out}")
        results[label] = json.loads(line[len("WRKJSON "):])
    return results


def _start_study(args: argparse.Namespace, base: str, token: str, server: subprocess.Popen,
                 server_log: Path) -> tuple[str, dict[str, Any]]:
    """Wait for the service, POST the study, wait until it runs a trial; returns its name and summary."""
    def healthy():
        if server.poll() is not None:
            raise BenchError(f"the server exited ({server.returncode}); log: {server_log}")
        status, body = _request(base, "GET", "/healthz", timeout=2)
        return status == 200, body
    _wait("the service's /healthz", 60, healthy)

    spec = json.loads(json.dumps(STUDY))
    # ~5 s a trial: enough trials to outlast the load with room to spare; the study ends by itself anyway
    spec["budget"] = {"trials": max(3, int(args.seconds // 2) + 30), "timeout_s": args.seconds * 4 + 300}
    status, body = _request(base, "POST", "/studies", token=token, body=spec, timeout=60)
    if status != 201:
        raise BenchError(f"POST /studies -> {status}: {body}")
    study = body["name"]

    def running():
        if server.poll() is not None:
            raise BenchError(f"the server exited ({server.returncode}); log: {server_log}")
        status, body = _request(base, "GET", f"/studies/{study}", timeout=5)
        if status == 200 and body["state"] in ("failed", "completed", "stopped"):
            raise BenchError(f"the study ended before the load started: {body['state']} ({body.get('reason')})")
        return status == 200 and body["state"] == "running" and body.get("running_trial") is not None, body
    return study, _wait(f"study {study!r} to be running a trial", 120, running, interval_s=0.5)


def _load(args: argparse.Namespace, base: str, token: str, study: str, home: Path, result: dict[str, Any]) -> None:
    """wrk against the endpoints while a poller watches the study's state once a second."""
    states: list[str] = []
    stop_polling = threading.Event()

    def poll():
        while not stop_polling.wait(1.0):
            try:
                status, body = _request(base, "GET", f"/studies/{study}", timeout=5)
                states.append(body["state"] if status == 200 else f"HTTP {status}")
            except (OSError, urllib.error.URLError) as err:
                states.append(f"error: {err}")
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        per = _run_wrk(args, base, token, study, home)
    finally:
        stop_polling.set()
        poller.join(timeout=10)
    status, after = _request(base, "GET", f"/studies/{study}", timeout=10)
    states.append(after["state"] if status == 200 else f"HTTP {status}")
    result["study_after"] = {k: after.get(k) for k in ("state", "trials_done", "running_trial")} \
        if status == 200 else {"status": status}
    result["study_states_seen"] = sorted(set(states))
    result["study_running_throughout"] = bool(states) and all(s == "running" for s in states)
    result["endpoints"] = {label: _one(p) for label, p in per.items()}
    result["overall"] = _merge(list(per.values()))


def _stop(base: str, token: str, study: str | None, server: subprocess.Popen, result: dict[str, Any]) -> None:
    """Stop the study (its knobs restored), then the service."""
    if study is not None:
        try:
            status, body = _request(base, "POST", f"/studies/{study}/stop", token=token, timeout=90)
            result["study_stop"] = {"status": status, "state": body.get("state") if isinstance(body, dict) else body}
        except (OSError, urllib.error.URLError) as err:
            result["study_stop"] = {"error": str(err)}
    result["server_exit"], killed = stop_serve(server, timeout_s=90)
    if killed:
        result["server_killed"] = True


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Start a service and a real study, load the read endpoints with wrk, stop everything; the figures."""
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed (Debian: apt-get install wrk)")
    home = Path(tempfile.mkdtemp(prefix="novatune-load-"))
    token = secrets.token_urlsafe(24)
    port = args.port or free_port()
    base = f"http://127.0.0.1:{port}"
    result: dict[str, Any] = {"clients": args.clients, "seconds": args.seconds, "target_p99_ms": args.target_ms,
                              "port": port}
    snap_before = home.parent / f"{home.name}-knobs-before.json"
    have_snapshot = _snapshot(snap_before)
    server, server_log = start_serve(home, token, port,
                                     env={"NOVATUNE_LOG_LEVEL": args.log_level} if args.log_level else None)
    result["server_pid"] = server.pid
    study = None
    try:
        study, before = _start_study(args, base, token, server, server_log)
        result["study"] = study
        result["study_before"] = {k: before.get(k) for k in ("state", "trials_done", "running_trial", "pid")}
        _load(args, base, token, study, home, result)
    finally:
        _stop(base, token, study, server, result)
        result["journal"] = _journal_check(home / "journal.jsonl")
        if have_snapshot:
            result["knobs"] = _snapshot_diff(snap_before)
            snap_before.unlink(missing_ok=True)
        if args.keep:
            result["data_dir"] = str(home)
            result["server_log"] = str(server_log)
        else:
            shutil.rmtree(home, ignore_errors=True)
            server_log.unlink(missing_ok=True)
    return result


def verdict(result: dict[str, Any]) -> tuple[bool, str]:
    o = result["overall"]
    running = result["study_running_throughout"]
    ok = o["p99_ms"] <= result["target_p99_ms"] and running and o["errors"] == 0
    per = "; ".join(f"{label}: p50 {e['p50_ms']} / p90 {e['p90_ms']} / p99 {e['p99_ms']} / max {e['max_ms']} ms, "
                    f"{e['requests']} req" for label, e in result["endpoints"].items())
    line = (f"p99 = {o['p99_ms']:.1f} ms (target <= {result['target_p99_ms']:.0f} ms) "
            f"with {result['clients']} clients, "
            f"{o['requests']} requests ({o['rps']:.0f}/s), {o['errors']} errors, "
            f"p50 {o['p50_ms']:.1f} / p90 {o['p90_ms']:.1f} / max {o['max_ms']:.1f} ms, "
            f"study running: {'yes' if running else 'NO (' + ', '.join(result['study_states_seen']) + ')'}"
            f" [{per}]")
    j = result.get("journal")
    if j is not None:
        line += (f"; own journal: {j.get('restored', 0)}/{j.get('applied', 0)} knob writes restored, "
                 f"{j.get('released', 0)}/{j.get('created', 0)} cgroups released")
        ok = ok and j["balanced"]
    knobs = result.get("knobs")
    if knobs is not None:
        line += f"; knobs after: {knobs['summary']}"
    return ok, line


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=20, help="load duration (default 20)")
    ap.add_argument("--clients", type=int, default=50, help="concurrent keep-alive connections (default 50)")
    ap.add_argument("--target-ms", type=float, default=50.0, help="p99 target in ms (default 50)")
    ap.add_argument("--port", type=int, default=0, help="service port (default: a free one)")
    ap.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None,
                    help="the service's log level (default: its setting, info)")
    ap.add_argument("--keep", action="store_true", help="keep the data directory and server log")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    if args.clients < 2 or args.seconds < 1:
        ap.error("--clients must be >= 2 and --seconds >= 1")
    return finish("api_load", lambda: run(args), verdict, as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
