"""The network scenario for real: experiments/specs/scenario-net-veth.yaml through the CLI.

A study owns two namespaces joined by a veth pair (``target: {netns: {}}``), iperf3 crosses it; the knobs act
inside both namespaces (observed there while the study runs), never on the host; afterwards the pair is gone
and every host setting reads as before. kill -9 mid-trial, then ``novatune recover``: the pair and the server
are gone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.integration.conftest import REPO, needs_root, novatune

pytestmark = [needs_root, pytest.mark.slow, pytest.mark.timeout(300)]

SPEC = REPO / "experiments" / "specs" / "scenario-net-veth.yaml"
HOST_FILES = [f"/proc/sys/net/{f}" for f in ("ipv4/tcp_rmem", "ipv4/tcp_wmem", "ipv4/tcp_congestion_control",
                                             "core/somaxconn", "core/busy_poll", "core/rmem_max")]


def _host() -> dict[str, str]:
    """The host's net settings the knobs of these studies name (other engineers' tests may add links or
    namespaces meanwhile: what the study made is checked by name, see :func:`_gone`)."""
    return {f: Path(f).read_text() for f in HOST_FILES}


def _gone(names: set[str]) -> bool:
    """No namespace and no host link of these names is left."""
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    return not names & _netns() and not any(f" {n}" in links for n in names)


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _in_ns(ns: str, path: str) -> str | None:
    proc = subprocess.run(["ip", "netns", "exec", ns, "cat", path], capture_output=True, text=True, timeout=10)
    return proc.stdout if proc.returncode == 0 else None


def _records(home: Path) -> list[dict]:
    journal = home / "journal.jsonl"
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines() if line.strip().endswith("}")]


class _Watcher(threading.Thread):
    """Polls the study's namespaces (new ``ntb*`` ones) for tcp_rmem and the veth's tso, bounded in time."""

    def __init__(self, before: set[str], deadline_s: float) -> None:
        super().__init__(daemon=True)
        self.before, self.deadline = before, time.monotonic() + deadline_s
        self.seen: dict[str, set[str]] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            for ns in sorted(_netns() - self.before):
                if not ns.startswith("ntb"):
                    continue
                value = _in_ns(ns, "/proc/sys/net/ipv4/tcp_rmem")
                if value is not None:
                    self.seen.setdefault(ns, set()).add(" ".join(value.split()))
            time.sleep(0.1)


def test_scenario_net_veth_tunes_inside_both_namespaces_and_leaves_nothing(tmp_path, home, monkeypatch):
    monkeypatch.setenv("NOVATUNE_STUDY_JUSTIFY", "false")  # the namespaces are the subject, not the re-measurement
    before = _host()
    watcher = _Watcher(_netns(), deadline_s=240)
    watcher.start()
    t0 = time.monotonic()
    try:
        run = novatune("study", "run", str(SPEC), "--trials", "2", home=home, timeout=240)
    finally:
        watcher.stop.set()
        watcher.join(timeout=15)
    assert run.returncode == 0, run.stdout + run.stderr
    assert time.monotonic() - t0 < 120
    assert "Traceback" not in run.stderr
    show = json.loads(novatune("study", "show", "scenario-net-veth", "--json", home=home, check=True).stdout)
    trials = show["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"], trials
    for t in trials:  # a veth pair on this VM carries Gbit/s; a loopback shortcut or a dead server would not fit
        assert 1e8 < t["values"]["throughput"] < 1e12, t
    # the knobs changed inside BOTH namespaces, each journaled, with the same value, and put back
    recs = _records(home)
    pair = sorted(r["target"] for r in recs if r.get("kind") == "netns" and r.get("event") == "created")
    assert len(pair) == 2 and pair[0][:-1] == pair[1][:-1], pair
    applied = [r for r in recs if r.get("kind") == "knob" and r.get("event") == "intent"]
    by_ns = {ns: {r["knob"].replace(ns, "@target"): r["new"] for r in applied if f"{ns}:" in r["target"]}
             for ns in pair}
    assert by_ns[pair[0]] and by_ns[pair[0]] == by_ns[pair[1]], by_ns
    assert all(r["target"].startswith(("netns:", "ntb")) for r in applied)  # nothing on the host
    restored = [r for r in recs if r.get("kind") == "knob" and r.get("event") == "restored"]
    assert len(restored) == len(applied)
    # observed from outside, in the namespaces, while the study ran: the sampled trial's tcp_rmem
    assert set(pair) <= set(watcher.seen), watcher.seen  # (another test may make namespaces meanwhile)
    rmem = next(r["new"] for r in applied if r["knob"] == "net.ipv4.tcp_rmem")
    for ns in pair:
        assert " ".join(rmem.split()) in watcher.seen[ns], (ns, watcher.seen[ns])
    assert _gone(set(pair)), "the study's namespaces or veth ends are left"
    assert _host() == before, "a host net setting differs after the study"


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, killed and waiting for its reaper, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _start(tmp_path: Path, home: Path) -> subprocess.Popen[str]:
    spec = yaml.safe_load(SPEC.read_text())
    spec.update(name="net-crash", trial={"warmup_s": 0, "measure_s": 30, "repeats": 1},
                budget={"trials": 3, "timeout_s": 200})
    path = tmp_path / "net-crash.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "NOVATUNE_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "experiments", "study", "run", str(path)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_mid_measurement(proc: subprocess.Popen[str], home: Path) -> None:
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until the baseline trial measures (iperf3 client running)
            assert proc.poll() is None, proc.communicate()
            if any(r.get("event") == "begin" for r in _records(home)) and any(
                    "iperf3 -c" in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"])):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the study never reached a measurement")
        time.sleep(1.0)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)


def test_kill_9_mid_trial_then_recover_deletes_the_pair_and_the_server(tmp_path, home):
    before = _host()
    proc = _start(tmp_path, home)
    recovered = False
    try:
        _kill_mid_measurement(proc, home)
        recs = _records(home)
        made = [r["target"] for r in recs if r.get("kind") == "netns" and r.get("event") == "created"]
        servers = [r["target"] for r in recs if r.get("kind") == "process" and r.get("event") == "created"]
        assert len(made) == 2 and set(made) <= _netns(), "the crash left no pair: the test would prove nothing"
        assert servers  # journaled; it may already have died of its parent-death signal (PR_SET_PDEATHSIG)

        rec = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
        recovered = True
        assert rec["failed"] == [], rec
        assert sorted(rec["netns_removed"]) == sorted(made)
        assert _gone(set(made))
        time.sleep(0.5)
        assert not any(_running(int(p)) for p in servers), "the killed run's server survived recover"
        assert _host() == before
        again = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
        assert again["netns_removed"] == [] and again["killed"] == []
    finally:
        if not recovered:  # a failed test leaves nothing behind either
            novatune("recover", home=home)


def test_wrk_across_the_pair_skips_host_wide_knobs_with_the_reason(tmp_path, home):
    """wrk in namespace b against the study's HTTP server in a; busy_poll (host-wide) skipped, never written."""
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        pytest.skip("wrk not installed (Debian package: wrk)")
    before = _host()
    spec = {"name": "net-wrk", "workload": {"kind": "wrk", "threads": 1, "connections": 16},
            "target": {"netns": {}},
            "knobs": {"net.ipv4.tcp_congestion_control": {"choices": ["reno", "bbr"]},
                      "nic.@target.tso": {"choices": ["on", "off"]},
                      "net.core.busy_poll": {"low": 0, "high": 50}},
            "objectives": {"throughput": "maximize"},
            "trial": {"warmup_s": 0, "measure_s": 2}, "budget": {"trials": 2}}
    path = tmp_path / "net-wrk.yaml"
    path.write_text(yaml.safe_dump(spec))
    run = novatune("study", "run", str(path), home=home, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    show = json.loads(novatune("study", "show", "net-wrk", "--json", home=home, check=True).stdout)
    assert "host-wide" in show["skipped"]["net.core.busy_poll"], show["skipped"]
    assert [t["state"] for t in show["trials"]] == ["complete", "complete"]
    for t in show["trials"]:
        assert t["values"]["throughput"] > 100, t  # req/s over the veth pair
    recs = _records(home)
    assert not any(r.get("knob") == "net.core.busy_poll" for r in recs)
    made = {r["target"] for r in recs if r.get("kind") == "netns" and r.get("event") == "created"}
    assert len(made) == 2 and _gone(made)
    assert _host() == before
