"""Real benchmark runs (root; stress-ng, numpy, ip): one short quick-suite run end to end through the CLI, and the
network namespace pair, created and always deleted (also when the block raises)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from experiments.bench.netns import NetnsError, netns_pair, pair_exists
from experiments.cli import main

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bench makes cgroups and namespaces: root only")


def _left_behind() -> tuple[set[str], set[str]]:
    cgroups = {p.name for p in Path("/sys/fs/cgroup/cpu").glob("novatune-bench-*")}
    scratch = {p.name for p in Path(tempfile.gettempdir()).glob("novatune-bench-*")}
    return cgroups, scratch


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed")
def test_quick_cpu_and_memory_run_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    before = _left_behind()
    assert main(["bench", "run", "--only", "cpu,memory", "--no-track", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["benchmarks"]) == {"cpu", "memory_triad"}
    for b in doc["benchmarks"].values():
        assert len(b["values"]) == doc["suite"]["windows"] == 5
        assert all(v > 0 for v in b["values"])
        assert b["median"] == sorted(b["values"])[2]
    assert doc["benchmarks"]["cpu"]["unit"] == "bogo-ops/s"
    ncpu = os.cpu_count() or 1
    shares = {n: b["cpu_share"] for n, b in doc["benchmarks"].items()}
    assert all(len(v) == 5 for v in shares.values())
    assert all(0.5 < x <= ncpu * 1.05 for x in shares["cpu"])  # one stress-ng worker per CPU, in the cgroup
    assert all(0.5 < x <= 1.05 for x in shares["memory_triad"])  # one single-threaded numpy kernel
    assert doc["machine"]["cpu_count"] == os.cpu_count()
    assert doc["kernel"]["release"] == os.uname().release
    assert "vm.swappiness" in doc["knobs"]
    assert _left_behind() == before  # the cgroup and the scratch directory are gone
    assert main(["bench", "show", doc["id"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == doc["id"]


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 not installed")
def test_the_namespace_pair_is_made_and_always_deleted():
    with netns_pair() as pair:
        tag = pair.a[:-1]
        assert pair_exists(tag)["netns"]
        assert pair.addr_a.startswith("10.213.")
    assert pair_exists(tag) == {"netns": False, "links": False}
    with pytest.raises(RuntimeError, match="boom"), netns_pair() as pair:
        tag = pair.a[:-1]
        raise RuntimeError("boom")
    assert pair_exists(tag) == {"netns": False, "links": False}


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 not installed")
def test_a_failed_set_up_deletes_what_it_made(monkeypatch):
    """The veth step fails after both namespaces exist: both are deleted and the error is a NetnsError."""
    import experiments.bench.netns as netns

    real = netns._ip
    made: list[str] = []

    def failing(*args: str, check: bool = True):
        if args[:2] == ("netns", "add"):
            made.append(args[2])
        if args[:2] == ("link", "add"):
            return real("link", "add", "x" * 40, "type", "veth", check=check)  # a name too long: ip refuses
        return real(*args, check=check)

    monkeypatch.setattr(netns, "_ip", failing)
    with pytest.raises(NetnsError, match="exited with"), netns_pair():
        pass
    monkeypatch.setattr(netns, "_ip", real)
    assert len(made) == 2
    assert not any(pair_exists(n)["netns"] for n in made)


_HOLDER = """
import sys, time
from actuators.journal import Journal
from experiments.bench.netns import netns_pair
journal = Journal(sys.argv[1])
with journal.run("bench-kill9"):
    with netns_pair(own=lambda n: journal.record_netns("bench-kill9", n),
                    disown=lambda n: journal.release_netns("bench-kill9", n)) as pair:
        print(pair.a[:-1], flush=True)
        time.sleep(60)
"""


@pytest.mark.skipif(shutil.which("ip") is None, reason="iproute2 not installed")
def test_kill_9_with_the_pair_up_then_recover_deletes_it(tmp_path):
    """The namespaces are journaled before they exist: after a kill -9, ``recover`` deletes them (and only
    names novatune makes: a record naming another namespace is refused, never acted on)."""
    import subprocess
    import sys

    from actuators.journal import Journal
    from actuators.recover import recover

    path = tmp_path / "journal.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        tag = proc.stdout.readline().strip()
        assert tag.startswith("ntb") and pair_exists(tag)["netns"]
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert pair_exists(tag)["netns"]  # nobody deleted them: the kill left them
    report = recover(Journal(path))
    assert sorted(report.netns_removed) == [f"{tag}a", f"{tag}b"]
    assert pair_exists(tag) == {"netns": False, "links": False}
    journal = Journal(path)
    journal.record_netns("someone-else", "host-ns")  # not a name novatune makes (a live run: forced below)
    again = recover(journal, force=True)
    assert again.netns_removed == []  # the pair's records are closed: nothing left to do
    assert any("host-ns" in r for r in again.refused)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed")
def test_a_cpu_quota_is_found_as_cpu_taken_away(tmp_path, monkeypatch, capsys):
    """Two real runs of the cpu benchmark, the second under a quota of 1 CPU: bench compare exits 3 and says the
    benchmark got less CPU (what a quota or a competing load does, and the host's drift does not)."""
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    assert main(["bench", "run", "--only", "cpu", "--no-track", "--json"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert main(["bench", "run", "--only", "cpu", "--no-track", "--json", "--cpu-quota", "1"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert max(run["benchmarks"]["cpu"]["cpu_share"]) <= 1.05
    assert main(["bench", "compare", base["id"], "--json"]) == 3
    row = json.loads(capsys.readouterr().out)["benchmarks"]["cpu"]
    assert row["verdict"] == "regression" and row["cpu_share"]["verdict"] == "regression"
