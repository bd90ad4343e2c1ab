"""The IO advisor on a real workload: a buffered sequential-read fio job on a loop device under a poor read-ahead.

A loop device backed by a file this command creates; its read-ahead set to a poor value through novatune's
journal (side A; side B is the advice, each applied through the journal and rolled back after its run);
the IO advisor reads the facts (``collectors.facts.io.read`` sampling ``/proc/diskstats``) while
the fio job runs and advises; the advice is applied through the journal and fio is measured before/after in
interleaved repeats (A B, B A, ...). Prints the advice, the measured effect (medians, 95 % intervals) and
the advice with the measured effect as its expected impact. Every change is rolled back, the loop device
detached and the file removed in ``finally`` blocks.

Run (root): ``python -m benchmarks.advisor_io [--repeats 6] [--poor-ra 0] [--size-mb 256]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from pathlib import Path

from actuators.catalog import Catalog, KnobContext
from actuators.sysroot import SysRoot
from benchmarks._advisor_common import Journaled, measured_advice, private_paths, run_bounded, summary
from collectors.facts import io as io_facts
from optimizer.advice import Advice
from optimizer.advisors import io as io_advisor
from optimizer.advisors.io import BlockFacts

_FIO_TIMEOUT_S = 60.0


def _fio(dev: str, *, size_mb: int, runtime_s: int) -> list[str]:
    return ["fio", "--name=seqread", f"--filename={dev}", "--rw=read", "--bs=64k", f"--size={size_mb}M",
            "--ioengine=psync", "--invalidate=1", f"--runtime={runtime_s}", "--output-format=json"]


def _throughput(dev: str, size_mb: int) -> float:
    """MiB/s of one bounded buffered sequential read of the device (its page cache dropped first by fio)."""
    out = json.loads(run_bounded(_fio(dev, size_mb=size_mb, runtime_s=10), timeout_s=_FIO_TIMEOUT_S))
    return float(out["jobs"][0]["read"]["bw_bytes"]) / (1 << 20)


def _advise_while_running(dev: str, name: str, size_mb: int, sample_s: float) -> tuple[list[Advice], BlockFacts]:
    """Start fio (time-bounded), sample the facts while it runs, advise; fio is always reaped."""
    argv = [*_fio(dev, size_mb=size_mb, runtime_s=int(sample_s) + 3), "--time_based", "--loops=1000"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        facts = io_facts.read(root="/", sample_s=sample_s)
    finally:
        try:
            proc.wait(timeout=_FIO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    dev_facts = next(d for d in facts.devices if d.name == name)
    ours = [a for a in io_advisor.advise(facts) if any(c.knob.startswith(f"block.{name}.") for c in a.changes)]
    return ours, dev_facts


def _make_backing(path: Path, size_mb: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size_mb):
            f.write(os.urandom(1 << 20))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=6, help="measurements per side (2..20)")
    ap.add_argument("--poor-ra", type=int, default=0, help="the poor read-ahead to start from (KiB)")
    ap.add_argument("--size-mb", type=int, default=256, help="the loop device's size (64..1024 MiB)")
    ap.add_argument("--sample-s", type=float, default=3.0)
    args = ap.parse_args(argv)
    repeats, size_mb = max(2, min(args.repeats, 20)), max(64, min(args.size_mb, 1024))
    with tempfile.TemporaryDirectory(prefix="advisor-io-") as tmp, private_paths() as paths:
        backing = Path(tmp) / "disk.img"
        _make_backing(backing, size_mb)
        dev = run_bounded(["losetup", "-f"], timeout_s=30).strip()  # the next free device
        name = os.path.basename(dev)
        ra_file = Path(f"/sys/block/{name}/queue/read_ahead_kb")
        pristine = ra_file.read_text()  # attaching sets the window from the backing file; detaching keeps it
        run_bounded(["losetup", dev, str(backing)], timeout_s=30)  # fails if another process took it meanwhile
        journal = Journaled(paths, Catalog(SysRoot("/"), KnobContext()))
        try:
            poor = {f"block.{name}.read_ahead_kb": args.poor_ra}
            journal.apply(poor, "advisor_io: the poor starting point")
            advice, facts = _advise_while_running(dev, name, size_mb // 2, args.sample_s)
            journal.undo_last()
            print(f"device {dev} ({facts.kind}, read_ahead_kb {facts.read_ahead_kb}, scheduler {facts.scheduler})")
            p = facts.sampled
            if p is not None:
                print("sampled:", json.dumps({"iops": round(p.iops), "read_share": round(p.read_share, 3),
                                              "mean_read_kb": round(p.mean_read_kb, 1),
                                              "read_merge_ratio": round(p.read_merge_ratio, 3),
                                              "queue_depth": round(p.queue_depth, 2)}))
            if not advice:
                print("the advisor advised nothing for this device: nothing to measure")
                return 1
            values = {c.knob: c.value for a in advice for c in a.changes}
            print("advice:", json.dumps([a.as_dict() for a in advice], default=str, indent=1))
            before: list[float] = []
            after: list[float] = []
            for i in range(repeats):
                for side in ("AB" if i % 2 == 0 else "BA"):
                    journal.apply(values if side == "B" else poor, f"advisor_io: side {side} (A poor, B advised)")
                    (after if side == "B" else before).append(_throughput(dev, size_mb // 2))
                    journal.undo_last()
            change, text = summary("throughput", before, after, "MiB/s")
            print(f"fio buffered sequential read, bs 64k, {size_mb // 2} MiB per run, interleaved A/B x {repeats}")
            print(text)
            for a in advice:
                print("measured advice:", json.dumps(measured_advice(a, change).as_dict(), default=str))
            journal.apply(values, "advisor_io: the advice, read again")
            again, _ = _advise_while_running(dev, name, size_mb // 2, args.sample_s)
            journal.undo_last()
            print("advice with the advice applied (should be none: no oscillation):", [a.title for a in again])
        finally:
            try:
                journal.close()
            finally:
                run_bounded(["losetup", "-d", dev], timeout_s=30)
                if ra_file.read_text() != pristine:  # the detached device as it was found
                    ra_file.write_text(pristine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
