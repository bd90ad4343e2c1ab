"""The block scenario for real: experiments/specs/scenario-block-loop.yaml makes a loop device, fio runs on
it, block.@target.* change that device during the trials, and every object and knob is back afterwards,
also after a kill -9 and `novatune recover`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.conftest import REPO, needs_root, novatune, snapshot

pytestmark = [needs_root, pytest.mark.slow]

SPEC = REPO / "experiments" / "specs" / "scenario-block-loop.yaml"
MMAP = REPO / "experiments" / "specs" / "scenario-block-mmap.yaml"
SEQREAD = REPO / "experiments" / "specs" / "scenario-block-seqread.yaml"
QUEUE = ("scheduler", "read_ahead_kb", "nr_requests", "wbt_lat_usec")


def _kernel() -> dict[str, str]:
    """The integration snapshot without the cgroup listings (other users' studies add and remove theirs on
    this shared machine; these studies make none: their specs size nothing)."""
    return {k: v for k, v in snapshot().items() if not k.startswith("cgroups:")}


def _queues() -> dict[str, dict[str, str]]:
    """Every loop device's queue settings (they outlive an attach: a device is reused as it was left)."""
    out = {}
    for dev in sorted(os.listdir("/sys/block")):
        if dev.startswith("loop"):
            out[dev] = {q: Path(f"/sys/block/{dev}/queue/{q}").read_text().strip() for q in QUEUE}
    return out


def _attached_under(home: Path) -> list[str]:
    """Loop devices whose backing file is under ``home``."""
    out = []
    for dev in os.listdir("/sys/block"):
        try:
            backing = Path(f"/sys/block/{dev}/loop/backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(str(home)):
            out.append(dev)
    return out


def _journal(home: Path) -> list[dict[str, Any]]:
    path = home / "journal.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]


def _device(home: Path) -> str | None:
    devs = [r["device"] for r in _journal(home) if r.get("kind") == "loop" and r.get("device")]
    return devs[-1] if devs else None


def _start(spec_path: Path, home: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "NOVATUNE_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "experiments", "study", "run", str(spec_path), *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _watch_until_done(proc: subprocess.Popen[str], watch: Callable[[], None], *, timeout_s: float,
                      every_s: float) -> tuple[str, str]:
    """Call ``watch()`` every ``every_s`` while the study runs (at most ``timeout_s``); its (stdout, stderr).
    The study is killed if it is still running when this returns or raises."""
    deadline = time.monotonic() + timeout_s
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            watch()
            time.sleep(every_s)
        return proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_block_loop_scenario_tunes_its_own_loop_device_and_removes_it(home: Path) -> None:
    before, queues = _kernel(), _queues()
    proc = _start(SPEC, home, "--trials", "2")
    seen: set[str] = set()  # nr_requests values read from the study's device while it ran
    devs: list[str] = []

    def watch() -> None:
        if not devs and (found := _device(home)) is not None:
            devs.append(found)
        if devs:
            try:
                seen.add(Path(f"/sys/block/{devs[0]}/queue/nr_requests").read_text().strip())
            except OSError:
                pass

    out, err = _watch_until_done(proc, watch, timeout_s=120, every_s=0.05)
    dev = devs[0] if devs else None
    assert proc.returncode == 0, out + err
    assert dev is not None and dev.startswith("loop")
    shown = json.loads(novatune("study", "show", "scenario-block-loop", "--json", home=home, check=True).stdout)
    trials = shown["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete"], trials
    for t in trials:
        m = t["metrics"]
        assert t["values"]["throughput"] > 100 and m["errors"] == 0
        assert m["bytes_per_s"] == pytest.approx(m["throughput"] * 4096, rel=0.05)  # 4k I/Os: fio's own sum
    tuned = str(trials[1]["knobs"]["block.@target.nr_requests"])
    assert tuned != queues[dev]["nr_requests"], "trial 1 kept the default: the test would prove nothing"
    assert tuned in seen, f"the device never read {tuned} during the study: saw {sorted(seen)}"
    # everything it made is gone, every knob back
    assert _attached_under(home) == []
    assert list(home.rglob("novatune-loop-*.img")) == []
    assert _queues()[dev] == queues[dev]
    assert _kernel() == before
    loops = [r for r in _journal(home) if r.get("kind") == "loop"]
    assert [r["event"] for r in loops] == ["created", "created", "released"]


def _kill_9_in_trial_1(proc: subprocess.Popen[str], home: Path, knobs: int, check: Callable[[], None], *,
                       timeout_s: float) -> None:
    """Wait (at most ``timeout_s``) until the study's journal shows trial 1's writes of ``knobs`` knobs, give
    fio a second, run ``check`` (what trial 1 changed), then kill -9 the study; killed on any failure too."""
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            applied = [r for r in _journal(home) if r.get("event") == "applied" and r.get("trial") == 1]
            if len(applied) >= knobs:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the study never reached trial 1")
        time.sleep(1.0)  # fio is on its device or file
        check()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _memory_limits(home: Path) -> set[str]:
    """The memory limits of the study's own workload cgroups (named in its journal), as they read now."""
    out = set()
    for r in _journal(home):
        if r.get("kind") == "cgroup" and r.get("event") == "created" and "/memory/" in str(r.get("target")):
            limit = Path(str(r.get("root", "/"))) / str(r["target"]) / "memory.limit_in_bytes"
            try:
                out.add(limit.read_text().strip())
            except OSError:
                pass
    return out


def test_mmap_scenario_a_small_read_ahead_beats_the_default_in_a_memory_limited_reader(tmp_path: Path,
                                                                                       home: Path) -> None:
    """experiments/specs/scenario-block-mmap.yaml with its read-ahead narrowed to two values: the device's
    default (trial 0) and 16 KiB. Under the 1 GiB limit every fault at the default reads 2560 KiB the cgroup
    cannot keep; at 16 KiB the reader runs several times faster. The limit holds while it runs; afterwards the
    cgroup, the device and its settings are gone or back."""
    spec = yaml.safe_load(MMAP.read_text())
    queues = _queues()
    # 3 trials: the baseline, then both grid points (in a random order: one of them repeats the baseline)
    spec.update(name="block-mmap", budget={"trials": 3}, sampler={"name": "grid"},
                knobs={"block.@target.read_ahead_kb": {"low": 16, "high": 2560, "step": 2544}})
    path = tmp_path / "mmap.yaml"
    path.write_text(yaml.safe_dump(spec))
    before = _kernel()
    proc = _start(path, home)
    limits: set[str] = set()
    out, err = _watch_until_done(proc, lambda: limits.update(_memory_limits(home)), timeout_s=240, every_s=0.2)
    assert proc.returncode == 0, out + err
    assert limits == {str(1 << 30)}, limits
    trials = json.loads(novatune("study", "show", "block-mmap", "--json", home=home, check=True).stdout)["trials"]
    ra = {t["knobs"]["block.@target.read_ahead_kb"]: t["values"]["throughput"] for t in trials}
    dev = _device(home)
    assert dev is not None and set(ra) == {int(queues[dev]["read_ahead_kb"]), 16}, ra
    assert ra[16] > 3 * ra[2560], ra
    assert _attached_under(home) == [] and _queues()[dev] == queues[dev]
    assert _memory_limits(home) == set() and _kernel() == before


def test_seqread_scenario_runs_and_leaves_nothing(tmp_path: Path, home: Path) -> None:
    """experiments/specs/scenario-block-seqread.yaml on a 512 MiB device (an eighth of the shipped one, the
    time to lay it out with it), 2 trials: buffered 4k sequential reads of the study's loop device;
    afterwards the device is gone and every loop device's settings read as before."""
    spec = yaml.safe_load(SEQREAD.read_text())
    spec["workload"]["size"] = "512M"
    spec["target"]["loop"] = {"size": "512M"}
    path = tmp_path / "seqread.yaml"
    path.write_text(yaml.safe_dump(spec))
    queues, before = _queues(), _kernel()
    proc = novatune("study", "run", str(path), "--trials", "2", home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = json.loads(novatune("study", "show", "scenario-block-seqread", "--json", home=home, check=True).stdout)
    assert [t["state"] for t in shown["trials"]] == ["complete", "complete"], shown["trials"]
    for t in shown["trials"]:  # 4k reads: the bytes are the operations'
        assert t["values"]["throughput"] > 0
        assert t["metrics"]["bytes_per_s"] == pytest.approx(4096 * t["values"]["throughput"], rel=0.01), t
    dev = _device(home)
    assert dev is not None and _attached_under(home) == [] and _queues()[dev] == queues[dev]
    assert _kernel() == before


def test_kill_9_mid_trial_then_recover_detaches_the_loop_device(tmp_path: Path, home: Path) -> None:
    spec = yaml.safe_load(SPEC.read_text())
    spec.update(name="block-crash", trial={"warmup_s": 0, "measure_s": 8, "repeats": 1},
                budget={"trials": 3, "timeout_s": 120})
    path = tmp_path / "block-crash.yaml"
    path.write_text(yaml.safe_dump(spec))
    before, queues = _kernel(), _queues()
    proc = _start(path, home)

    def changed() -> None:
        dev = _device(home)
        assert dev is not None and _attached_under(home) == [dev]
        assert _queues()[dev] != queues[dev], "trial 1 changed nothing on the device"

    _kill_9_in_trial_1(proc, home, len(spec["knobs"]), changed, timeout_s=90)
    dev = _device(home)
    assert dev is not None
    assert _attached_under(home) == [dev]  # the kill left it attached
    report = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
    assert report["failed"] == [] and report["refused"] == [], report
    assert report["loops_removed"] == [f"/dev/{dev}"], report
    # an fio run the killed study started may still have the device open: the kernel detaches it (autoclear)
    # when that bounded run (measure_s 8) ends
    deadline = time.monotonic() + 40
    while _attached_under(home) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _attached_under(home) == []
    assert list(home.rglob("novatune-loop-*.img")) == []
    assert _queues()[dev] == queues[dev]
    assert _kernel() == before
    again = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
    assert again["loops_removed"] == [] and again["restored"] == []


@pytest.mark.parametrize(("spec", "says"), [
    ({"workload": {"kind": "iperf3"}, "target": {"loop": {"size": "64M"}}},
     "target.loop: the iperf3 workload cannot use a loop device; allowed with target.loop: workload kind fio"),
    ({"workload": {"kind": "fio"}}, "knobs.block.@target.nr_requests: acts on the study's block target"),
    ({"workload": {"kind": "fio"}, "target": {"loop": {"size": "64G"}}}, "target.loop.size: Value error, size "
     "must be between 16M and 4G"),
])
def test_bad_target_is_exit_2_with_the_reason_and_nothing_is_made(tmp_path: Path, home: Path, spec: dict[str, Any],
                                                                   says: str) -> None:
    path = tmp_path / "bad.yaml"
    knobs = {"block.@target.nr_requests": {"low": 4, "high": 64}}
    path.write_text(yaml.safe_dump({"name": "bad-target", "knobs": knobs, "objectives": {"throughput": "maximize"},
                                    **spec}))
    before = _queues()
    proc = novatune("study", "run", str(path), home=home, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert _attached_under(home) == [] and _queues() == before
    assert not (home / "journal.jsonl").exists() or "loop" not in (home / "journal.jsonl").read_text()
