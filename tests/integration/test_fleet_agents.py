"""Agents of a fleet sharing one study in a real PostgreSQL, each host a network namespace of this machine.

Each agent runs inside its own network namespace (``ip netns exec``) with its own data directory and lock
directory, as a separate host would: the ``net.*`` knobs it tunes are that namespace's, so the three cannot
collide, and iperf3 runs on that namespace's loopback. They reach PostgreSQL through its Unix socket (127.0.0.1
inside a namespace is the namespace's own). One agent is killed with ``-9`` in the middle of a trial: the
others' heartbeat check fails that trial, the study finishes on the two left, and the killed agent, started
again, restores its namespace's knobs from its journal before anything else. The central service, killed
with ``-9`` and started again meanwhile, shows every trial afterwards. A PostgreSQL restart in the middle
of a study loses no trial. The host's own knobs are never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx  # the dev extra declares httpx2 (same API)
import pytest
import yaml

from tests.integration.conftest import REPO, needs_root, novatune, snapshot
from tests.integration.test_api_studies import free_port

pytestmark = [pytest.mark.slow, needs_root,
              pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 not installed"),
              pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                                 reason="PostgreSQL not installed (.ci/run installs it)")]

KNOBS = {"net.core.somaxconn": (128, 8192), "net.ipv4.tcp_notsent_lowat": (16384, 4294967295),
         "net.ipv4.tcp_slow_start_after_idle": (0, 1)}


@pytest.fixture(scope="module")
def pg():
    from benchmarks.pgcluster import PgCluster

    with PgCluster(socket=True) as cluster:
        yield cluster


@contextlib.contextmanager
def namespaces(n: int) -> Iterator[list[str]]:
    """``n`` network namespaces of this test (loopback up), deleted on every way out."""
    names = [f"ntfl{os.getpid() % 100000}-{i}" for i in range(n)]
    try:
        for ns in names:
            subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=30)
        yield names
    finally:
        for ns in names:
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True, timeout=30)
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)


def ns_knobs(ns: str) -> dict[str, int]:
    out = {}
    for name in KNOBS:
        path = "/proc/sys/" + name.replace(".", "/")
        out[name] = int(subprocess.run(["ip", "netns", "exec", ns, "cat", path], capture_output=True, text=True,
                                       check=True, timeout=30).stdout)
    return out


def submit(url: str, tmp_path: Path, name: str, trials: int, measure_s: float, *extra: str) -> None:
    spec = {"name": name, "workload": {"kind": "iperf3", "streams": 1},
            "knobs": {k: {"low": lo, "high": hi} for k, (lo, hi) in KNOBS.items()},
            "objectives": {"throughput": "maximize"},
            "trial": {"warmup_s": 0, "measure_s": measure_s, "repeats": 1}, "budget": {"trials": trials},
            "sampler": {"name": "tpe", "seed": 2}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    home = tmp_path / "submitter"
    home.mkdir(mode=0o700, exist_ok=True)
    proc = novatune("--storage", url, "fleet", "submit", str(path), "--selector", "role=web", "--name", name,
                    *extra, home=home)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr


class Agent:
    """One agent process in namespace ``ns``, with its own data and lock directories (one host's)."""

    def __init__(self, ns: str, host: str, url: str, tmp_path: Path, grace_s: float = 4,
                 exit_when_idle: bool = True) -> None:
        self.ns, self.host, self.url, self.grace_s, self.exit_when_idle = ns, host, url, grace_s, exit_when_idle
        self.home = tmp_path / host
        self.home.mkdir(mode=0o700, exist_ok=True)
        self.log = self.home / f"agent-{len(list(self.home.glob('agent-*.log')))}.log"  # a restart: a new log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Agent:
        env = {**os.environ, "NOVATUNE_HOME": str(self.home), "NOVATUNE_LOCK_DIR": str(self.home / "locks"),
               "COLUMNS": "200"}
        argv = ["ip", "netns", "exec", self.ns, sys.executable, "-m", "experiments", "--storage", self.url, "agent",
                "--labels", f"role=web,zone={self.host}", "--host-id", self.host, "--heartbeat-s", "1",
                "--grace-s", str(self.grace_s), "--poll-s", "0.3"]
        argv += ["--exit-when-idle"] if self.exit_when_idle else []
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout: float = 300) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, as systemd stops it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def applied_trials(self) -> set[int]:
        """The trial numbers whose knobs this host's journal shows written (intent records)."""
        path = self.home / "journal.jsonl"
        records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
        return {r["trial"] for r in records if r.get("kind") == "knob" and r.get("event") == "intent"
                and isinstance(r.get("trial"), int) and r["trial"] >= 0}


def serve(home: Path, port: int, url: str) -> subprocess.Popen[bytes]:
    """``novatune --storage URL serve`` on 127.0.0.1:``port``, answering."""
    env = {**os.environ, "NOVATUNE_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "--storage", url, "serve", "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for("the service to answer", answers, timeout=60)
    return proc


def trials(url: str, name: str) -> list[dict[str, Any]]:
    import optuna

    study = optuna.load_study(study_name=name, storage=url)
    return [{"number": t.number, "state": t.state.name, "host": t.user_attrs.get("host"),
             "reason": t.user_attrs.get("reason")} for t in study.trials]


def hosts_alive(url: str, tmp_path: Path) -> set[str]:
    """The hosts ``novatune fleet hosts --json`` says are alive."""
    home = tmp_path / "submitter"
    home.mkdir(mode=0o700, exist_ok=True)
    listed = json.loads(novatune("--storage", url, "fleet", "hosts", "--json", home=home, check=True).stdout)
    return {h["id"] for h in listed if h["alive"]}


def study_attrs(url: str, name: str) -> dict[str, Any]:
    import optuna

    return optuna.load_study(study_name=name, storage=url).user_attrs


def wait_for(what: str, check, timeout: float = 120, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def test_three_agents_one_killed_mid_trial_the_study_finishes_and_its_knobs_come_back(pg, tmp_path: Path) -> None:
    url = pg.socket_url
    before = snapshot()
    with namespaces(3) as names:
        found = {ns: ns_knobs(ns) for ns in names}
        submit(url, tmp_path, "fleet-kill", trials=9, measure_s=1.5)
        agents = [Agent(ns, f"h{i}", url, tmp_path).start() for i, ns in enumerate(names)]
        victim = agents[0]
        service_home, port = tmp_path / "service", free_port()
        service_home.mkdir(mode=0o700)
        service = serve(service_home, port, url)  # the central service, on the same storage
        try:
            running = wait_for("a trial running on h0 after its first", lambda: [
                t for t in trials(url, "fleet-kill") if t["host"] == "h0" and t["state"] == "RUNNING"
                and t["number"] in victim.applied_trials()], timeout=180)
            killed = running[0]["number"]
            victim.kill()
            service.kill()  # the service dies too: the fleet's study does not depend on it
            service.wait(timeout=30)
            service = serve(service_home, port, url)
            for a in agents[1:]:
                assert a.wait(timeout=300) == 0, a.output()
            served = httpx.get(f"http://127.0.0.1:{port}/studies/fleet-kill/trials", timeout=30).json()
            assert [(t["trial"], t["host"]) for t in served] == [(t["number"], t["host"])
                                                               for t in trials(url, "fleet-kill")]
            done = trials(url, "fleet-kill")
            assert sorted(t["number"] for t in done) == list(range(9)), done
            by_number = {t["number"]: t for t in done}
            assert by_number[killed]["state"] == "FAIL" and by_number[killed]["host"] == "h0", done
            others = [t for t in done if t["number"] != killed]
            assert all(t["state"] == "COMPLETE" for t in others if t["host"] != "h0"), done
            assert {t["host"] for t in others} >= {"h1", "h2"}, done  # the two left finished it
            assert study_attrs(url, "fleet-kill")["state"] == "completed"
            # never double-applied: each trial's knobs were written on one host, the one it is recorded for
            applied = {a.host: a.applied_trials() for a in agents}
            for a in agents:
                assert applied[a.host] == {t["number"] for t in done if t["host"] == a.host
                                           and (t["state"] == "COMPLETE" or t["number"] == killed)}, (a.host, done)
            for ns in names[1:]:
                assert ns_knobs(ns) == found[ns]  # the agents that finished put their namespaces back
            again = Agent(names[0], "h0", url, tmp_path).start()  # the killed host's agent, restarted
            assert again.wait(timeout=120) == 0, again.output()
            restored = again.output()
            assert "registered" in restored and "0 knob(s) restored" not in restored, restored
            assert ns_knobs(names[0]) == found[names[0]], "the killed agent's namespace was not put back"
            attrs = study_attrs(url, "fleet-kill")
            assert {f"baseline@h{i}" for i in range(3)} <= set(attrs), sorted(attrs)
        finally:
            for a in agents:
                a.kill()
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=60)
    assert snapshot() == before, "the host's own knobs changed"
    for a in agents:
        assert "Traceback" not in a.output(), a.output()


def test_a_postgresql_restart_mid_study_loses_no_trial(pg, tmp_path: Path) -> None:
    url = pg.socket_url
    before = snapshot()
    with namespaces(2) as names:
        found = {ns: ns_knobs(ns) for ns in names}
        submit(url, tmp_path, "fleet-pg-restart", trials=6, measure_s=2)
        agents = [Agent(ns, f"r{i}", url, tmp_path, grace_s=20).start() for i, ns in enumerate(names)]
        try:
            wait_for("a trial complete and another running", lambda: (
                (ts := trials(url, "fleet-pg-restart"))
                and any(t["state"] == "COMPLETE" for t in ts) and any(t["state"] == "RUNNING" for t in ts)),
                timeout=180)
            pg.restart(down_s=3)  # every connection cut, 3 s without a database
            for a in agents:
                assert a.wait(timeout=300) == 0, a.output()
        finally:
            for a in agents:
                a.kill()
        done = trials(url, "fleet-pg-restart")
        assert [t["state"] for t in done] == ["COMPLETE"] * 6, done
        assert study_attrs(url, "fleet-pg-restart")["state"] == "completed"
        applied = [a.applied_trials() for a in agents]
        assert applied[0].isdisjoint(applied[1]) and applied[0] | applied[1] == set(range(6)), applied
        assert any("unreachable" in a.output() for a in agents), [a.output() for a in agents]
        for ns in names:
            assert ns_knobs(ns) == found[ns]
    assert snapshot() == before


def test_fleet_wide_each_configuration_is_measured_on_every_host_and_told_as_their_mean(pg, tmp_path: Path) -> None:
    import optuna

    url = pg.socket_url
    before = snapshot()
    with namespaces(3) as names:
        found = {ns: ns_knobs(ns) for ns in names}
        agents = [Agent(ns, f"w{i}", url, tmp_path, grace_s=10, exit_when_idle=False).start()
                  for i, ns in enumerate(names)]
        try:
            wait_for("the three agents registered", lambda: {"w0", "w1", "w2"} <= hosts_alive(url, tmp_path))
            submit(url, tmp_path, "fleet-wide", 3, 1.0, "--mode", "fleet-wide", "--hosts-per-trial", "3")
            wait_for("the study to end", lambda: study_attrs(url, "fleet-wide")["state"] == "completed", timeout=300)
            for a in agents:
                a.stop()
            for a in agents:
                assert a.wait(timeout=120) == 130, a.output()  # SIGTERM: interrupted, everything put back
        finally:
            for a in agents:
                a.kill()
        study = optuna.load_study(study_name="fleet-wide", storage=url)
        assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
        for t in study.trials:
            hosts = t.user_attrs["hosts"]
            assert hosts["measured"] == ["w0", "w1", "w2"], hosts
            per_host = hosts["throughput"]["per_host"]
            assert t.values[0] == pytest.approx(sum(per_host.values()) / 3)  # the objective is their mean
            assert hosts["throughput"]["min"] <= t.values[0] <= hosts["throughput"]["max"]
            assert len(t.user_attrs["samples"]) == 3  # a row per host
        for a in agents:  # every host applied every configuration, through its own journal
            assert a.applied_trials() == {0, 1, 2}, a.host
        for ns in names:
            assert ns_knobs(ns) == found[ns]
    assert snapshot() == before


def test_per_host_each_host_runs_its_own_study_warm_started_from_the_others(pg, tmp_path: Path) -> None:
    import optuna

    url = pg.socket_url
    before = snapshot()
    with namespaces(2) as names:
        found = {ns: ns_knobs(ns) for ns in names}
        submit(url, tmp_path, "fleet-ph", 3, 1.0, "--mode", "per-host")
        first = Agent(names[0], "p0", url, tmp_path).start()  # one host, then the other: it can learn from it
        assert first.wait(timeout=300) == 0, first.output()
        second = Agent(names[1], "p1", url, tmp_path).start()
        assert second.wait(timeout=300) == 0, second.output()
        studies = {n: optuna.load_study(study_name=f"fleet-ph.{n}", storage=url) for n in ("p0", "p1")}
        for s in studies.values():
            assert s.user_attrs["state"] == "completed"
            assert [t.state.name for t in s.trials] == ["COMPLETE"] * 3
            assert s.trials[0].user_attrs.get("baseline") is True  # each host compares with itself as found
        assert studies["p0"].user_attrs["target"] == studies["p1"].user_attrs["target"]  # one fleet target
        shown = json.loads(novatune("--storage", url, "study", "show", "fleet-ph.p0", "--json",
                                    home=tmp_path / "p0", check=True).stdout)
        knobs = {r["trial"]: r["knobs"] for r in shown["trials"]}
        expected = []  # what p1's warm start must be: p0's choice, then its noisy front, minus the baseline
        for n in [shown["choice"]["trial"], *shown["choice"]["noisy_front"]]:
            if knobs[n] != knobs[0] and knobs[n] not in expected:
                expected.append(knobs[n])
        assert studies["p1"].user_attrs["warm_start"] == expected[:3]
        fleet = optuna.load_study(study_name="fleet-ph", storage=url).user_attrs
        assert {fleet["host@p0"]["state"], fleet["host@p1"]["state"]} == {"completed"}
        for ns in names:
            assert ns_knobs(ns) == found[ns]
    assert snapshot() == before
