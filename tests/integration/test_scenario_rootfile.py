"""The block scenarios on the machine's own disk for real: experiments/specs/scenario-block-rootfile.yaml (an
mmap reader) and scenario-block-write.yaml (a buffered writer) run fio on a file in the study's run directory,
block.@target.* change the queue settings of the disk that holds it, and the disk's settings (and the dirty
ratios) are back afterwards, also after a kill -9 and `novatune recover`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiments.study.target_disk import disk_of
from tests.integration.conftest import REPO, needs_root, novatune
from tests.integration.test_scenario_block import (
    QUEUE,
    _journal,
    _kernel,
    _kill_9_in_trial_1,
    _memory_limits,
    _start,
    _watch_until_done,
)

pytestmark = [needs_root, pytest.mark.slow]

SPEC = REPO / "experiments" / "specs" / "scenario-block-rootfile.yaml"
WRITE = REPO / "experiments" / "specs" / "scenario-block-write.yaml"


def _queue(disk: str) -> dict[str, str]:
    return {q: Path(f"/sys/block/{disk}/queue/{q}").read_text().strip() for q in QUEUE}


def _spec(tmp_path: Path, source: Path = SPEC, size: str = "1G", limit: str = "256M", **changes: Any) -> Path:
    """The spec with ``changes``, on a ``size`` file in ``limit`` of memory (half the shipped ones: the same
    ratio, half the time to lay the file out)."""
    spec = yaml.safe_load(source.read_text())
    spec["workload"]["size"] = size
    spec["target"]["memory"] = {"limit": limit}
    spec.update(changes)
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_rootfile_scenario_tunes_the_disk_under_the_file_and_puts_it_back(tmp_path: Path, home: Path) -> None:
    """The spec with its read-ahead narrowed to a grid of 16 and 8192 KiB (this machine's default for its
    disk): under the memory limit each fault at 8192 KiB reads 2048 pages the cgroup cannot keep; at 16 KiB
    the reader runs many times faster. The disk is the one that holds the study's home (fio's file is there);
    its settings change while the study runs and are back afterwards, with the limit's cgroup and the file
    gone."""
    disk = disk_of(home)
    path = _spec(tmp_path, name="rootfile", budget={"trials": 3}, sampler={"name": "grid"},
                 knobs={"block.@target.read_ahead_kb": {"low": 16, "high": 8192, "step": 8176}})
    queue, before = _queue(disk), _kernel()
    seen: set[str] = set()
    limits: set[str] = set()

    def watch() -> None:
        seen.add(Path(f"/sys/block/{disk}/queue/read_ahead_kb").read_text().strip())
        limits.update(_memory_limits(home))

    proc = _start(path, home)
    out, err = _watch_until_done(proc, watch, timeout_s=300, every_s=0.2)
    assert proc.returncode == 0, out + err
    assert "16" in seen and limits == {str(256 << 20)}, (seen, limits)
    shown = json.loads(novatune("study", "show", "rootfile", "--json", home=home, check=True).stdout)
    ra = {t["knobs"]["block.@target.read_ahead_kb"]: t["values"]["throughput"] for t in shown["trials"]}
    assert set(ra) >= {16, 8192} and ra[16] > 3 * ra[8192], ra
    writes = [r for r in _journal(home) if r.get("event") == "applied"]
    assert writes and {r["knob"] for r in writes} == {f"block.{disk}.read_ahead_kb"}, writes[:3]
    assert _queue(disk) == queue and _kernel() == before
    assert _memory_limits(home) == set() and list(home.rglob("fio.dat")) == []


def test_write_scenario_tunes_writeback_and_the_disk_and_puts_both_back(tmp_path: Path, home: Path) -> None:
    """The write-heavy spec, 3 trials: fio writes (4k, buffered) in the memory-limited cgroup, the trials
    write the dirty ratios and the disk's writeback throttling, and all of it reads as before afterwards."""
    disk = disk_of(home)
    path = _spec(tmp_path, WRITE, name="rootwrite", budget={"trials": 3})
    queue, before = _queue(disk), _kernel()
    limits: set[str] = set()
    proc = _start(path, home)
    out, err = _watch_until_done(proc, lambda: limits.update(_memory_limits(home)), timeout_s=300, every_s=0.5)
    assert proc.returncode == 0, out + err
    assert limits == {str(256 << 20)}, limits
    shown = json.loads(novatune("study", "show", "rootwrite", "--json", home=home, check=True).stdout)
    done = [t for t in shown["trials"] if t["state"] == "complete"]
    assert len(done) >= 2, shown["trials"]
    for t in done:  # 4k writes: the bytes are the operations'
        assert t["metrics"]["bytes_per_s"] == pytest.approx(4096 * t["values"]["throughput"], rel=0.01), t
    written = {r["knob"] for r in _journal(home) if r.get("event") == "applied"}
    assert {"vm.dirty_ratio", f"block.{disk}.wbt_lat_usec"} <= written, written
    assert _queue(disk) == queue and _kernel() == before
    assert _memory_limits(home) == set() and list(home.rglob("fio.dat")) == []


def test_kill_9_mid_trial_then_recover_puts_the_disk_back(tmp_path: Path, home: Path) -> None:
    disk = disk_of(home)
    path = _spec(tmp_path, size="256M", name="rootfile-crash", trial={"warmup_s": 0, "measure_s": 10, "repeats": 1},
                 budget={"trials": 3, "timeout_s": 120}, sampler={"name": "grid"},
                 knobs={"block.@target.read_ahead_kb": {"low": 16, "high": 32, "step": 16}})
    queue, before = _queue(disk), _kernel()
    proc = _start(path, home)

    def changed() -> None:
        assert _queue(disk)["read_ahead_kb"] in {"16", "32"}, "trial 1 changed nothing on the disk"

    _kill_9_in_trial_1(proc, home, 1, changed, timeout_s=120)
    assert _queue(disk) != queue  # the kill left the trial's value
    report = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
    assert report["failed"] == [] and report["refused"] == [], report
    assert f"block.{disk}.read_ahead_kb" in json.dumps(report["restored"]), report
    assert _queue(disk) == queue and _kernel() == before
    again = json.loads(novatune("recover", "--json", home=home, check=True).stdout)
    assert again["restored"] == []


@pytest.mark.parametrize(("spec", "says"), [
    ({"workload": {"kind": "fio"}, "target": {"disk": {}, "loop": {"size": "64M"}}},
     "target.disk: with target.loop the block.@target.* knobs act on the loop device; use one of them"),
    ({"workload": {"kind": "iperf3"}, "target": {"disk": {}}},
     "target.disk: the iperf3 workload runs on no file; allowed with target.disk: workload kind fio"),
    ({"workload": {"kind": "fio", "filename": "/dev/shm/novatune-test/fio.dat"}, "target": {"disk": {}}},
     "is not on a block device"),
    ({"workload": {"kind": "fio"}, "target": {"disk": {"device": "sda"}}},
     "target.disk.device: unknown field; allowed here: no field (an empty mapping: {})"),
    ({"workload": {"kind": "fio"}}, "knobs.block.@target.nr_requests: acts on the study's block target"),
])
def test_bad_disk_target_is_exit_2_with_the_reason_and_nothing_changes(tmp_path: Path, home: Path,
                                                                       spec: dict[str, Any], says: str) -> None:
    path = tmp_path / "bad.yaml"
    knobs = {"block.@target.nr_requests": {"low": 4, "high": 64}}
    path.write_text(yaml.safe_dump({"name": "bad-disk", "knobs": knobs, "objectives": {"throughput": "maximize"},
                                    **spec}))
    disk = disk_of(home)
    queue = _queue(disk)
    proc = novatune("study", "run", str(path), home=home, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert _queue(disk) == queue and not (home / "journal.jsonl").exists()
