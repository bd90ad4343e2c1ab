"""Studies in a shared PostgreSQL (``--storage`` / ``NOVATUNE_STORAGE``), started by the test on 127.0.0.1.

Two data directories stand for two hosts: a study one of them runs is seen, with its trials, from the
other through the same storage, and not at all from a data directory without it. Nothing of the study
goes to the host's ``optuna.db``; the host's knobs are put back as ever.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import needs_root, novatune, snapshot

pytestmark = [pytest.mark.slow, needs_root,
              pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng not installed"),
              pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")),
                                 reason="PostgreSQL not installed (.ci/run installs it)")]


@pytest.fixture(scope="module")
def pg():
    from benchmarks.pgcluster import PgCluster

    with PgCluster() as cluster:
        yield cluster


def test_a_study_in_postgresql_is_seen_from_another_host_and_not_in_the_local_store(pg, home: Path,
                                                                                   tmp_path: Path) -> None:
    spec = {"name": "shared", "workload": {"kind": "stress-ng", "stressor": "cpu", "workers": 1},
            "knobs": {"vm.swappiness": {"low": 1, "high": 100}}, "objectives": {"throughput": "maximize"},
            "trial": {"warmup_s": 0, "measure_s": 0.5, "repeats": 1}, "budget": {"trials": 3},
            "sampler": {"name": "tpe", "seed": 1}}
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(spec))
    before = snapshot()
    url = pg.url.replace("postgresql+psycopg://", "postgresql://")  # what a user types
    proc = novatune("--storage", url, "study", "run", str(path), home=home, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before
    assert pg.password not in proc.stdout + proc.stderr
    assert not (home / "optuna.db").exists(), "the study went to the host's own store"

    other = tmp_path / "other-host"  # a second data directory: another host of the fleet
    other.mkdir(mode=0o700)
    shown = json.loads(novatune("--storage", url, "study", "show", "shared", "--json", home=other, check=True).stdout)
    assert [t["state"] for t in shown["trials"]] == ["complete"] * 3, shown["trials"]
    listed = json.loads(novatune("--storage", url, "study", "list", "--json", home=other, check=True).stdout)
    assert [s["name"] for s in listed] == ["shared"], listed
    alone = novatune("study", "list", "--json", home=other, check=True)  # no storage: the host's own, empty
    assert json.loads(alone.stdout) == [], alone.stdout
