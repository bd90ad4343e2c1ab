"""A data directory whose MLflow store a newer MLflow wrote (a downgrade, or two environments sharing
one home): the study is refused with a message that says so and what to do, exit 2, nothing changed.

MLflow itself upgrades an older store on open; only the newer one is refused, with "out-of-date
database schema" (which reads as if the store were the old side)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import needs_root, novatune, snapshot

pytestmark = [pytest.mark.slow, needs_root,
              pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed")]


def test_a_store_from_a_newer_mlflow_is_refused_before_any_knob_changes(home: Path, tmp_path: Path) -> None:
    db = home / "mlflow.db"  # the session's initialised store (conftest.seed_home)
    with sqlite3.connect(db) as con:
        (ours,), = con.execute("SELECT version_num FROM alembic_version").fetchall()
        con.execute("UPDATE alembic_version SET version_num = 'ffffffffffff'")  # a revision this MLflow lacks
    spec = {"name": "newer", "workload": {"kind": "stress-ng", "stressor": "cpu", "workers": 1},
            "knobs": {"vm.swappiness": {"low": 1, "high": 100}}, "objectives": {"throughput": "maximize"},
            "trial": {"warmup_s": 0, "measure_s": 0.5, "repeats": 1}, "budget": {"trials": 3}}
    path = tmp_path / "newer.yaml"
    path.write_text(yaml.safe_dump(spec))
    before = snapshot()
    proc = novatune("study", "run", str(path), home=home, timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    said = " ".join(proc.stderr.split())
    assert "written by a newer MLflow" in said and "ffffffffffff" in said, said
    assert "pip install -U" in said and "NOVATUNE_MLFLOW_TRACKING_URI" in said, said
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    assert snapshot() == before
    with sqlite3.connect(db) as con:  # the store is left as found
        assert con.execute("SELECT version_num FROM alembic_version").fetchall() == [("ffffffffffff",)]
        con.execute("UPDATE alembic_version SET version_num = ?", (ours,))
    # nothing of the refused run is left: the same name runs once MLflow can open the store
    again = novatune("study", "run", str(path), home=home, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert snapshot() == before
