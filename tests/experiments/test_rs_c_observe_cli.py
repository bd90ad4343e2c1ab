"""``novatune observe`` through typer's CliRunner on a small app that registers ``observe_cmd`` (the lead wires it
into the main app): a live cgroup of the test's own, a refused target, the modes, a CSV import through a stand-in
reader, Ctrl-C (a real subprocess)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from collectors.passive.allowed import TargetRefused
from collectors.usage.errors import PrometheusUnreachable, TargetNotFound
from collectors.usage.history import UsageStore
from collectors.usage.traces import TraceError
from experiments.cli._common import UserError
from experiments.cli.observe import observe_cmd, parse_time, target_spec
from tests.collectors.usage.conftest import BUSY, CPU_Q, MEM_Q, LiveCgroup, make_live_cgroup, run_prometheus

REPO = Path(__file__).resolve().parents[2]
app = typer.Typer()


@pytest.fixture
def live_cgroup() -> Iterator[LiveCgroup]:
    yield from make_live_cgroup()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> Iterator[str]:
    yield from run_prometheus(tmp_path_factory.mktemp("prom"))


app.command()(observe_cmd)
app.command("noop")(lambda: None)  # two commands: the first is called by name


def run(home: Path, *args: str, allowed: list[str] | None = None, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("NOVATUNE_HOME", str(home))
    monkeypatch.setenv("NOVATUNE_ALLOWED_TARGETS", json.dumps(allowed or []))
    return CliRunner().invoke(app, ["observe-cmd", *args])


def test_target_options_become_specs_and_times_parse():
    assert target_spec(42, None, None) == "pid:42"
    assert target_spec(None, None, "nginx") == "unit:nginx.service"
    assert target_spec(None, None, "a.scope") == "unit:a.scope"
    assert target_spec(None, "/a/b/", None) == "cgroup:/a/b"
    assert target_spec(None, "/sys/fs/cgroup/memory/a/b", None) == "cgroup:/a/b"
    assert target_spec(None, "/sys/fs/cgroup/a", None) == "cgroup:/a"  # v2: the unified hierarchy
    with pytest.raises(UserError, match="give one target"):
        target_spec(1, "/a", None)
    assert parse_time("2026-01-01T00:00:00Z", default=0) == 1767225600.0
    assert parse_time("2026-01-01T00:00:00", default=0) == 1767225600.0
    assert parse_time(None, default=5.0) == 5.0 and parse_time("12.5", default=0) == 12.5
    with pytest.raises(UserError, match="ISO 8601"):
        parse_time("yesterday", default=0)


@pytest.mark.slow
def test_observe_a_live_cgroup_stores_samples_and_prints_a_summary(live_cgroup, tmp_path, monkeypatch):
    live_cgroup.spawn(BUSY, 0.3, 20)
    rule = f"cgroup:{live_cgroup.rel}"
    res = run(tmp_path, "--cgroup", f"/sys/fs/cgroup/cpu/{live_cgroup.name}", "--interval", "0.3", "--duration",
              "1.6", "--json", allowed=[rule], monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["target"] == rule and doc["gone"] == {} and 4 <= doc["samples"] <= 6
    store = UsageStore(tmp_path / "usage.db")
    assert len(store.series(rule)) == doc["samples"] and store.targets()[0].source == "observe"
    res = run(tmp_path, "--cgroup", live_cgroup.rel, "--interval", "0.2", "--duration", "0.5", allowed=[rule],
              monkeypatch=monkeypatch)
    assert res.exit_code == 0 and "samples stored in" in res.output and f"{rule}: 2 samples stored" in res.output


def test_a_target_not_allowed_or_missing_is_refused_before_anything_is_stored(tmp_path, monkeypatch):
    res = run(tmp_path, "--pid", str(os.getppid()), monkeypatch=monkeypatch)
    assert isinstance(res.exception, TargetRefused)
    res = run(tmp_path, "--systemd", "nt-rs-c-none", allowed=["unit:nt-rs-c-none.service"], monkeypatch=monkeypatch)
    assert isinstance(res.exception, TargetNotFound) and "systemd" in str(res.exception)
    assert not (tmp_path / "usage.db").exists()


def test_modes_are_exclusive_and_complete(tmp_path, monkeypatch):
    for args in ([], ["--pid", "5", "--prometheus", "http://127.0.0.1:1"], ["--import-csv", "x.csv", "--pid", "5"]):
        res = run(tmp_path, *args, monkeypatch=monkeypatch)
        assert isinstance(res.exception, UserError) and "give one of" in str(res.exception)
    res = run(tmp_path, "--prometheus", "http://127.0.0.1:1", "--query-cpu", "x", monkeypatch=monkeypatch)
    assert isinstance(res.exception, UserError) and "--query-mem" in str(res.exception)
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    res = run(tmp_path, "--prometheus", f"http://127.0.0.1:{port}", "--query-cpu", "a", "--query-mem", "b",
              "--target", "t", "--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T01:00:00Z",
              monkeypatch=monkeypatch)
    assert isinstance(res.exception, PrometheusUnreachable)


@pytest.mark.slow
def test_a_prometheus_import_is_stored_under_its_target(prometheus, tmp_path, monkeypatch):
    end = time.time()
    res = run(tmp_path, "--prometheus", prometheus, "--query-cpu", CPU_Q, "--query-mem", MEM_Q, "--target", "prom",
              "--start", str(end - 20), "--end", str(end), "--step", "1", "--json", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["mode"] == "import-prometheus" and doc["stored"]["prom"] == doc["samples"] >= 6
    series = UsageStore(tmp_path / "usage.db").series("prom")
    assert len(series) == doc["samples"] and (series.mem_gib > 0).all()
    res = run(tmp_path, "--prometheus", prometheus, "--query-cpu", "rate(", "--query-mem", MEM_Q, "--target", "p",
              monkeypatch=monkeypatch)
    assert "parse error" in str(res.exception)


def test_a_csv_import_stores_every_vm_under_its_id(tmp_path, monkeypatch):
    trace = tmp_path / "trace.csv"
    trace.write_text("vm_id,timestamp,cpu_used_cores,mem_used_gib\n"
                     "vm-a,0,1.0,1.0\nvm-b,0,0.5,2.0\nvm-a,300,2.0,1.5\nvm-b,300,0.25,2.5\n")
    res = run(tmp_path, "--import-csv", str(trace), "--json", monkeypatch=monkeypatch)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["stored"] == {"vm-a": 2, "vm-b": 2}
    store = UsageStore(tmp_path / "usage.db")
    assert [t.source for t in store.targets()] == ["csv", "csv"]
    assert store.series("vm-a").cpu_cores.tolist() == [1.0, 2.0] and store.series("vm-b").mem_gib.tolist() == [2.0, 2.5]
    bad = tmp_path / "bad.csv"
    bad.write_text("vm_id,timestamp,cpu_used_cores\nvm-a,0,1.0\n")
    res = run(tmp_path, "--import-csv", str(bad), monkeypatch=monkeypatch)
    assert isinstance(res.exception, TraceError) and "lacks column(s) mem_used_gib" in str(res.exception)


@pytest.mark.slow
def test_ctrl_c_ends_cleanly_with_a_summary(live_cgroup, tmp_path):
    live_cgroup.spawn(BUSY, 0.2, 30)
    script = ("import typer\nfrom experiments.cli.observe import observe_cmd\napp = typer.Typer()\n"
              "app.command()(observe_cmd)\napp.command('noop')(lambda: None)\napp()\n")
    env = {**os.environ, "NOVATUNE_HOME": str(tmp_path), "PYTHONPATH": str(REPO),
           "NOVATUNE_ALLOWED_TARGETS": json.dumps([f"cgroup:{live_cgroup.rel}"])}
    proc = subprocess.Popen([sys.executable, "-c", script, "observe-cmd", "--cgroup", live_cgroup.rel, "--interval",
                             "0.2"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # printed just before Ctrl-C is taken over (imports may take seconds here)
        time.sleep(1.5)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=20)
        stderr = first + stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and "observing cgroup:" in stderr
    m = re.search(r"^(\d+) samples stored in ", stdout, re.M)  # one line: a long path must not wrap it
    assert m, stdout
    n = int(m.group(1))
    assert n >= 3 and len(UsageStore(tmp_path / "usage.db").series(f"cgroup:{live_cgroup.rel}")) == n
