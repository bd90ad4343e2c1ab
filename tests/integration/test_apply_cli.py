"""apply -> verify -> recover -> rollback on the real machine, through the CLI (a harmless knob, restored).

Uses ``vm.stat_interval`` (seconds between VM statistics updates): changing it
for a few seconds is harmless. Every test puts the raw file back, whatever happens.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from actuators import Catalog, ChangeSession, Journal, SysRoot
from tests.integration.conftest import needs_root, novatune

pytestmark = needs_root

KNOB = "vm.stat_interval"
FILE = Path("/proc/sys/vm/stat_interval")



def tune(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    return novatune(*args, home=home, timeout=120)


@pytest.fixture
def original() -> str:
    raw = FILE.read_text()
    try:
        yield raw
    finally:
        if FILE.read_text() != raw:
            FILE.write_text(raw)
            pytest.fail(f"{FILE} was left changed; put back {raw!r}")


def _export(tmp_path: Path, value: int) -> Path:
    p = tmp_path / "best.json"
    p.write_text(json.dumps({"format": "novatune.config/v1", "study": "s", "trial": 3, "chosen_by": "test",
                             "knobs": {KNOB: value}, "objectives": {}, "metrics": {}, "exported_at": "now"}))
    return p


def test_apply_verify_recover_rollback_round_trip(tmp_path: Path, original: str) -> None:
    home = tmp_path / "home"
    old = int(original.split()[0])
    new = 2 if old != 2 else 3
    cfg = _export(tmp_path, new)

    dry = tune("apply", str(cfg), "--dry-run", "--json", home=home)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["knobs"][0] == {"knob": KNOB, "old": old, "new": new, "changes": True,
                                                       "scope": "host", "live": None, "drift": None,
                                               "held_by": None, "target": None}
    assert FILE.read_text() == original and not (home / "journal.jsonl").exists()

    assert tune("verify", str(cfg), home=home).returncode == 1  # not applied yet: drift
    applied = tune("apply", str(cfg), "--json", home=home)
    assert applied.returncode == 0, applied.stderr
    app_id = json.loads(applied.stdout)["id"]
    assert int(FILE.read_text()) == new
    assert tune("verify", str(cfg), home=home).returncode == 0

    rec = tune("recover", "--json", home=home)  # the applying process is gone: recover must leave it alone
    assert rec.returncode == 0, rec.stderr
    assert json.loads(rec.stdout)["kept"] == [app_id] and int(FILE.read_text()) == new

    st = tune("status", "--json", home=home)
    assert st.returncode == 0 and json.loads(st.stdout)["drift"] == []
    hist = tune("history", home=home)
    assert hist.returncode == 0 and app_id in hist.stdout and "applied" in hist.stdout

    again = tune("apply", str(_export(tmp_path, 4)), home=home)
    assert again.returncode == 2 and f"held by application {app_id}" in again.stderr

    rb = tune("rollback", home=home)
    assert rb.returncode == 0, rb.stderr
    assert FILE.read_text() == original
    assert tune("verify", str(cfg), home=home).returncode == 1  # values returned: drift from the config
    twice = tune("rollback", app_id, home=home)
    assert twice.returncode == 2 and "already rolled back" in twice.stderr
    hist = json.loads(tune("history", "--json", home=home).stdout)
    assert [(h["id"], h["state"]) for h in hist] == [(app_id, "rolled_back")]


def test_rollback_refuses_drift_then_force_restores(tmp_path: Path, original: str) -> None:
    home = tmp_path / "home"
    old = int(original.split()[0])
    new, other = (2, 3) if old not in (2, 3) else (4, 5)
    assert tune("apply", str(_export(tmp_path, new)), home=home).returncode == 0
    FILE.write_text(f"{other}\n")  # an operator changed it by hand
    st = tune("status", home=home)
    assert st.returncode == 1 and "DRIFT" in st.stdout
    rb = tune("rollback", home=home)
    assert rb.returncode == 2 and f"{KNOB}: is {other} now, applied {new}" in rb.stderr
    assert int(FILE.read_text()) == other
    forced = tune("rollback", "--force", home=home)
    assert forced.returncode == 0, forced.stderr
    assert FILE.read_text() == original


def test_apply_refused_while_a_live_run_holds_the_knob(tmp_path: Path, original: str) -> None:
    home = tmp_path / "home"
    old = int(original.split()[0])
    journal = Journal(home / "journal.jsonl")
    journal.begin("study-x-live")
    session = ChangeSession(journal, run_id="study-x-live", trial=0)
    session.apply(Catalog(SysRoot("/")).get(KNOB), 2 if old != 2 else 3)  # this test process is the live owner
    try:
        res = tune("apply", str(_export(tmp_path, 4)), home=home)
        assert res.returncode == 2
        assert f"{KNOB}: held by the live run 'study-x-live' (pid {os.getpid()})" in res.stderr
    finally:
        assert session.restore_all() == []
    assert FILE.read_text() == original


def test_bad_config_changes_nothing(tmp_path: Path, original: str) -> None:
    home = tmp_path / "home"
    p = tmp_path / "bad.json"
    p.write_text(json.dumps({"format": "novatune.config/v1", "knobs": {KNOB: 2, "vm.swappiness": 999, "vm.bogus": 1}}))
    res = tune("apply", str(p), home=home)
    assert res.returncode == 2
    assert "vm.swappiness: 999 is outside the hard bounds" in res.stderr and "unknown knob 'vm.bogus'" in res.stderr
    assert FILE.read_text() == original and not (home / "journal.jsonl").exists()
    assert tune("rollback", "nope", home=home).returncode == 2


@pytest.mark.parametrize("kind", ["sysctl", "tuned"])
def test_an_installed_sysctl_or_tuned_export_applies_verifies_and_rolls_back(tmp_path: Path, original: str,
                                                                             kind: str) -> None:
    """The deployed formats themselves: `novatune apply` and `verify` read a sysctl.d file or a TuneD profile."""
    home = tmp_path / "home"
    new = 2 if int(original.split()[0]) != 2 else 3
    if kind == "sysctl":
        cfg = tmp_path / "90-novatune.conf"
        cfg.write_text(f"# novatune export\n{KNOB} = {new}\n")
    else:
        cfg = tmp_path / "novatune-profile"
        cfg.mkdir()
        (cfg / "tuned.conf").write_text(
            f"[main]\nsummary=test\ninclude=throughput-performance\n\n[sysctl]\n{KNOB}={new}\n")
    assert tune("verify", str(cfg), home=home).returncode == 1  # not applied yet
    applied = tune("apply", str(cfg), "--json", home=home)
    assert applied.returncode == 0, applied.stderr
    assert int(FILE.read_text()) == new
    ok = tune("verify", str(cfg), home=home)
    assert ok.returncode == 0, ok.stdout
    if kind == "tuned":
        assert "not checked" in ok.stdout and "throughput-performance" in ok.stdout
    assert tune("rollback", home=home).returncode == 0
    assert FILE.read_text() == original
