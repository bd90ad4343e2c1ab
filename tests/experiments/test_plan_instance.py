"""novatune plan on instance.type: the size and price delta of a resize, from the price catalogue."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _plan(tmp_path, knobs, root=None):
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"format": "novatune.config/v1", "knobs": knobs}))
    args = [sys.executable, "-m", "experiments", "plan", str(cfg), "--json"]
    if root is not None:
        args += ["--root", str(root)]
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)


def _ec2_root(tmp_path, itype):
    p = tmp_path / "root/sys/devices/virtual/dmi/id/product_name"
    p.parent.mkdir(parents=True)
    p.write_text(itype + "\n")
    return tmp_path / "root"


def test_resize_delta_from_the_catalogue(tmp_path):
    proc = _plan(tmp_path, {"instance.type": "c5.large"}, root=_ec2_root(tmp_path, "m5.xlarge"))
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)["knobs"][0]
    assert row["current"] == "m5.xlarge" and row["new"] == "c5.large" and row["changes"] is True
    d = row["price"]["delta"]
    # m5.xlarge 4 vCPU 16 GiB $0.192/h -> c5.large 2 vCPU 4 GiB $0.085/h (collectors/data/aws-ec2-us-east-1.csv)
    assert (d["vcpus_delta"], d["memory_gib_delta"]) == (-2, -12)
    assert d["usd_per_hour_delta"] == pytest.approx(0.085 - 0.192)
    assert d["usd_per_month_delta"] == pytest.approx((0.085 - 0.192) * 730)
    assert "plan only" in row["reason"]


def test_unknown_current_type_still_prices_the_target(tmp_path):
    proc = _plan(tmp_path, {"instance.type": "m5.large"}, root=tmp_path)
    row = json.loads(proc.stdout)["knobs"][0]
    assert row["price"]["usd_per_hour"] == 0.096 and row["price"]["delta"] is None


def test_unknown_instance_type_is_refused(tmp_path):
    proc = _plan(tmp_path, {"instance.type": "z9.huge"}, root=tmp_path)
    assert proc.returncode == 2
    assert "z9.huge" in proc.stderr and "Traceback" not in proc.stderr
