"""``novatune bench gain``: bad input is refused before anything runs (exit 2, what is allowed, no traceback)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIO = str(REPO / "experiments" / "specs" / "fio.yaml")


def _gain(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NOVATUNE_HOME": str(home), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "experiments", "bench", "gain", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize(("args", "message"), [
    ([FIO, "--rounds", "1"], "rounds must be 2..50 (a paired interval needs two), got 1"),
    ([FIO, "--confirm", "1"], "confirm must be 0 (none) or 2..50 (a paired interval needs two), got 1"),
    ([FIO, "--metric", "nope"], "metric 'nope' is not an objective or SLA metric of spec 'fio-example'; allowed: "
                                "throughput, cost_usd_per_hour, latency_p99_ms"),
    ([FIO, "--study", "never-ran"], "study 'never-ran': no study named 'never-ran'"),
    ([str(REPO / "README.md")], "unsupported file type '.md'"),
])
def test_bad_input_is_refused_with_what_is_allowed(tmp_path: Path, args: list[str], message: str) -> None:
    proc = _gain(tmp_path / "home", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in " ".join(proc.stderr.split()), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home" / "gain").exists()  # nothing measured, nothing stored
