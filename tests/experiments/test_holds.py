"""Machine-wide holds on host knobs, across processes and data directories."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from experiments.holds import KnobHeld, KnobHolds
from experiments.service import create_app
from experiments.settings import Paths, Settings

#: the Host the test client sends: the guard answers loopback names only (its default 'testserver' is 400)
LOCAL = "http://127.0.0.1"

HOLDER = """
import sys, time
from experiments.holds import KnobHolds

KnobHolds(sys.argv[1:], owner="study elsewhere in /data/b").acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture()
def lock_dir(tmp_path, monkeypatch):
    d = tmp_path / "locks"
    monkeypatch.setenv("NOVATUNE_LOCK_DIR", str(d))
    return d


@pytest.fixture()
def other_process(lock_dir):
    """Another novatune process holding vm.swappiness (as a study of another data directory would)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, "vm.swappiness"], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "NOVATUNE_LOCK_DIR": str(lock_dir)})
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_held_knob_is_refused_with_its_holder_and_freed_when_the_holder_dies(other_process):
    with pytest.raises(KnobHeld, match=r"vm.swappiness is held by study elsewhere in /data/b \(pid \d+\)"):
        KnobHolds(["vm.dirty_ratio", "vm.swappiness"], owner="me").acquire()
    KnobHolds(["vm.dirty_ratio"], owner="me").acquire().release()  # all or none: dirty_ratio was let go
    other_process.send_signal(signal.SIGKILL)  # kill -9: the kernel drops the flock
    other_process.wait()
    with KnobHolds(["vm.swappiness"], owner="me"):
        pass


def test_the_api_refuses_a_study_on_a_knob_another_data_directory_tunes(other_process, tmp_path):
    app = create_app(Paths(tmp_path / "home"), Settings(api_token="holds-token-0123456789"))
    spec = {"name": "x", "workload": {"kind": "oltp"}, "knobs": {"vm.swappiness": {"low": 1, "high": 100}},
            "objectives": {"throughput_rps": "maximize"}}
    with TestClient(app, base_url=LOCAL) as c:
        r = c.post("/studies", json=spec, headers={"Authorization": "Bearer holds-token-0123456789"})
        assert r.status_code == 409 and "held by study elsewhere in /data/b" in r.json()["detail"], r.text
        assert c.get("/studies").json() == []  # nothing registered, nothing started


def test_apply_refuses_a_knob_another_process_tunes(other_process, tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"format": "novatune.config/v1", "knobs": {"vm.swappiness": 61}}))
    before = Path("/proc/sys/vm/swappiness").read_text()
    env = {**os.environ, "NOVATUNE_HOME": str(tmp_path / "home"), "COLUMNS": "300"}
    proc = subprocess.run([sys.executable, "-m", "experiments", "apply", str(cfg)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and "vm.swappiness is held by study elsewhere" in proc.stderr, proc.stderr
    assert Path("/proc/sys/vm/swappiness").read_text() == before
