"""The validated apply on a real workload (acceptance of issue 16's first point), through the CLI with --json.

The real degradation (``read_ahead_kb: 0`` on a loop device under a buffered sequential reader: rolled back,
the old bytes back, the throughput interval below -10 %) is the README's "Keep it tuned" block, run and
checked by tests/integration/test_readme.py. Here, on an ext4 filesystem on a loop device the test creates
(backed by a file in the test's tmp dir, detached in a finally): a change that does nothing to the measured workload
(the loop device's ``rq_affinity`` 1 -> 2 while stress-ng's CPU stressor runs) must end ``kept``: stress-ng's
bogo-ops/s vary by a few per cent from window to window here, so the first pairs already show it is inside the
guard (a noisier workload needs more pairs for the same answer: benchmarks/decision_quality.py). A kill -9
during the validation window, then ``novatune recover``, must leave the old value.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import REPO

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (losetup, mount)")]


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout.strip()


@pytest.fixture
def loopfs(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(``loopN``, the mounted filesystem): a 1 GiB file of the test's, attached, ext4, mounted."""
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(1 << 30)
    dev = _run("losetup", "--find", "--show", str(img))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    try:
        _run("mkfs.ext4", "-q", dev)
        _run("mount", dev, str(mnt))
        try:
            yield Path(dev).name, mnt
        finally:
            for _ in range(30):  # a killed workload may still be exiting (recover's kill): bounded retries
                if subprocess.run(["umount", str(mnt)], check=False, capture_output=True, timeout=120).returncode == 0:
                    break
                time.sleep(1.0)
    finally:
        subprocess.run(["losetup", "-d", dev], check=False, timeout=60)


FIO = "{kind: fio, rw: read, bs: 4k, size: 700M, ioengine: psync, filename: %s/f}"
STRESS_NG = "{kind: stress-ng, stressor: cpu, workers: 1}"


def _setup(tmp_path: Path, mnt: Path, knobs: dict[str, object], *, workload: str = FIO
           ) -> tuple[Path, Path, dict[str, str]]:
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"name: ra-check\nworkload: {workload.replace('%s', str(mnt))}\n"
                    "knobs: {vm.dirty_ratio: {low: 10, high: 40}}\n"
                    "objectives: {throughput: maximize}\ntrial: {warmup_s: 1, measure_s: 3}\n")
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"format": "novatune.config/v1", "knobs": knobs}))
    env = {"NOVATUNE_WORKLOAD_ALLOWED_PATHS": json.dumps([str(mnt)])}
    return spec, cfg, env


def novatune(*args: str, home: Path, env: dict[str, str] | None = None, check: bool = False,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "experiments", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NOVATUNE_HOME": str(home), "COLUMNS": "200",
                                                **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"novatune {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def _queue(dev: str, name: str) -> bytes:
    return Path(f"/sys/block/{dev}/queue/{name}").read_bytes()


def _validate(home: Path, cfg: Path, spec: Path, env: dict[str, str], *, window: str = "40",
              max_window: str = "120", guards: tuple[str, ...] = ()) -> tuple[int, dict, str]:
    proc = novatune("apply", str(cfg), "--validate", str(spec), "--window", window, "--max-window", max_window,
                    *[a for g in guards for a in ("--guard", g)], "--json", home=home, timeout=900, env=env)
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}, proc.stderr


def test_a_change_that_does_nothing_is_kept_and_rolls_back(tmp_path, loopfs) -> None:
    dev, mnt = loopfs
    knob = f"block.{dev}.rq_affinity"
    old = _queue(dev, "rq_affinity")
    new = 2 if old.strip() != b"2" else 1
    # stress-ng reports no latency: the guard is its objective (the default -10 %)
    spec, cfg, env = _setup(tmp_path, mnt, {knob: new}, workload=STRESS_NG)
    home = tmp_path / "home"
    code, report, err = _validate(home, cfg, spec, env, guards=("throughput:-10%",))
    assert code == 0, f"{report.get('reason')}\n{err}"
    assert report["decision"] == "kept" and report["application"]
    assert all(m["verdict"] == "ok" for m in report["metrics"])
    assert _queue(dev, "rq_affinity") == f"{new}\n".encode()
    hist = json.loads(novatune("history", "--json", home=home, check=True).stdout)
    assert [a["id"] for a in hist] == [report["application"]]
    novatune("rollback", report["application"], home=home, check=True)
    assert _queue(dev, "rq_affinity") == old
    listed = json.loads(novatune("validations", "--json", home=home, check=True).stdout)
    assert [(v["id"], v["decision"]) for v in listed] == [(report["id"], "kept")]


def test_kill_9_during_validation_then_recover_puts_the_old_value_back(tmp_path, loopfs) -> None:
    dev, mnt = loopfs
    knob = f"block.{dev}.read_ahead_kb"
    spec, cfg, env = _setup(tmp_path, mnt, {knob: 0})
    old = _queue(dev, "read_ahead_kb")
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "experiments", "apply", str(cfg), "--validate", str(spec),
                             "--window", "40", "--json"], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "NOVATUNE_HOME": str(home), **env})
    try:
        deadline = time.monotonic() + 180
        while _queue(dev, "read_ahead_kb") != b"0\n" and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _queue(dev, "read_ahead_kb") == b"0\n", "the change was never applied"
        time.sleep(1.0)  # inside the window with the change
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert _queue(dev, "read_ahead_kb") == b"0\n"  # the crash left it changed
    novatune("recover", home=home, check=True, env=env)
    assert _queue(dev, "read_ahead_kb") == old
    stray = subprocess.run(["pgrep", "-f", f"filename={mnt}/f"], capture_output=True, text=True)
    assert stray.stdout.strip() == "", "recover ends the workload the killed validation started"
    listed = json.loads(novatune("validations", "--json", home=home, check=True).stdout)
    assert [v["decision"] for v in listed] == ["crashed"]
