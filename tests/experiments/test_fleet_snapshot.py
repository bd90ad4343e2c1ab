"""The fleet snapshot (:mod:`experiments.fleet.snapshot`): today's data directory, its stores made through their
own code, read kind by kind without creating or changing a file, an unsafe store skipped alone, and the
publication into a fleet database (SQLite) equal to what was read: the upgrade from the SQLite layout of today."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actuators import Catalog, SysRoot
from collectors.profiler.formats import collapsed
from collectors.profiler.model import ProfileMeta
from collectors.profiler.store import ProfileStore
from experiments.autotune.store import TunerStore, new_tuner_id
from experiments.deploy.applications import history
from experiments.deploy.apply import apply_config
from experiments.deploy.rollback import rollback
from experiments.fleet.hosts import HostRegistry
from experiments.fleet.snapshot import Snapshot, publish, snapshot
from experiments.fleet.state import KINDS, FleetState
from experiments.recommend.engine import Recommendations
from experiments.rightsizing.proposals import ProposalStore
from experiments.settings import Paths, Settings
from experiments.spec import parse_spec
from experiments.study.manager import StudyManager
from tests.actuators.conftest import build_fake_tree, tree_bytes
from tests.experiments.test_recommend_sources import _study as recommend_study

VALUES = {"rightsize.cpu_cores": 1.5, "rightsize.memory_gib": 2.0}


def listing(home: Path) -> dict[str, tuple[int, int, int]]:
    """Every entry under ``home``: (mode, size, mtime in ns); equal listings mean nothing was made or written."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(home):
        for name in dirnames + filenames:
            st = os.lstat(Path(dirpath, name))
            out[os.path.relpath(Path(dirpath, name), home)] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def _profile_id(paths: Paths) -> str:
    meta = ProfileMeta(mode="cpu", engine="py-spy", rate_hz=100.0, start=time.time() - 20, duration_s=10.0,
                       pid=4242, cmdline="python app.py", cgroup="/novatune/app", labels={"svc": "shop"},
                       overhead={"pyspy_cpu_pct": 0.5})
    prof = collapsed.loads("thread (0x10): MainThread;main (app.py:10);hot (app.py:30) 12\n"
                           "thread (0x10): MainThread;main (app.py:10);cold (app.py:40) 3", meta=meta)
    return ProfileStore(paths.profiles).put(prof)


@pytest.fixture()
def home(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A data directory with one of everything, each made by its store's own public code; the application is
    applied to a fake /proc + /sys tree and rolled back (the tree restored byte for byte) at the end."""
    paths = Paths(tmp_path / "home").ensure()
    root = SysRoot(build_fake_tree(tmp_path / "root"))
    cat = Catalog(root)
    before = tree_bytes(root.root)
    proposal = ProposalStore(paths.rightsizing_db).create(
        target="cgroup:/svc", profile="balanced", recommendation={"finding": "over-provisioned"}, values=VALUES)
    ProposalStore(paths.rightsizing_db).transition(proposal.id, "approved", who="alice", note="ok")
    app = apply_config({"vm.swappiness": 10}, paths=paths, source="unit", catalog=cat)
    recommend_study(paths, "better", [(60, 100.0), (10, 130.0)])  # beat its baseline: one recommendation
    rl = Recommendations(paths, Settings()).collect(sources=("studies",))
    spec = parse_spec({"name": "s", "workload": {"kind": "oltp"}, "knobs": {"vm.swappiness": {"low": 1, "high": 9}},
                       "objectives": {"throughput_rps": "maximize"}})
    StudyManager(paths).claim(spec, name="web-1", trials=7, managed=False, pid=os.getpid())
    gone = subprocess.Popen(["true"])
    gone.wait()
    spec2 = parse_spec({"name": "s", "workload": {"kind": "oltp"}, "knobs": {"sizing.vcpus": {"low": 0.5, "high": 1}},
                        "objectives": {"throughput_rps": "maximize"}})
    StudyManager(paths).claim(spec2, name="bg-1", trials=3, managed=True, pid=gone.pid)
    profile = _profile_id(paths)
    tuner = TunerStore(paths, new_tuner_id(), create=True)
    tuner.write_meta({"id": tuner.id, "state": "stopped", "cycle": 3, "knobs": ["vm.swappiness"],
                      "spec": {"name": "s"}, "started": time.time(), "reason": "asked to stop"})
    try:
        yield {"paths": paths, "proposal": proposal.id, "app": app.id, "rec": rl.advice[0].id, "profile": profile,
               "tuner": tuner.id, "catalog": cat}
    finally:
        if [a.state for a in history(paths) if a.id == app.id] == ["applied"]:
            rollback(app.id, paths=paths, catalog=cat)
        assert tree_bytes(root.root) == before


def test_every_kind_is_read_with_its_keys_and_fields_and_nothing_is_created_or_changed(home) -> None:
    paths = home["paths"]
    before = listing(paths.home)
    snap = snapshot(paths)
    assert listing(paths.home) == before
    assert snap.skipped == {} and set(snap.kinds) == set(KINDS)
    k = snap.kinds
    bg = k["studies"].pop("bg-1")
    assert bg["state"] == "interrupted" and "is gone" in bg["reason"] and bg["managed"] is True
    assert k["studies"] == {"web-1": {
        "name": "web-1", "state": "running", "managed": False, "knobs": ["vm.swappiness"], "trials": 7,
        "created": pytest.approx(time.time(), abs=60), "updated": pytest.approx(time.time(), abs=60),
        "reason": None, "resumes": 0}}
    [(app_id, app)] = k["applications"].items()
    assert app_id == home["app"] and app["state"] == "applied" and app["source"] == "unit"
    assert [(x["knob"], x["old"], x["new"]) for x in app["knobs"]] == [("vm.swappiness", 60, 10)]
    [(rec_id, rec)] = k["recommendations"].items()
    assert rec_id == home["rec"] and rec["advisor"] == "study" and rec["rank"] == 1 and rec["root"] == "/"
    assert rec["changes"] == [{"knob": "vm.swappiness", "value": 10, "current": 60}]
    [(pid, prop)] = k["proposals"].items()
    assert pid == home["proposal"] and prop["state"] == "approved" and prop["values"] == VALUES
    assert [h["state"] for h in prop["history"]] == ["proposed", "approved"] and prop["allowed_next"] == [
        "applied", "rejected"]
    [(prof_id, prof)] = k["profiles"].items()
    assert prof_id == home["profile"] and prof["target"] == "python app.py" and prof["samples"] == 15
    assert prof["labels"]["svc"] == "shop" and prof["kind"] == "window" and prof["duration_s"] == 10.0
    assert list(k["tuners"]) == [home["tuner"]]
    assert k["tuners"][home["tuner"]]["state"] == "stopped" and k["tuners"][home["tuner"]]["cycle"] == 3


def test_an_empty_data_directory_gives_empty_kinds_and_creates_nothing(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "home").ensure()
    before = listing(paths.home)
    assert snapshot(paths) == Snapshot(kinds={kind: {} for kind in KINDS}, skipped={})
    assert listing(paths.home) == before
    missing = Paths(tmp_path / "never")
    assert snapshot(missing).kinds == {kind: {} for kind in KINDS}
    assert not missing.home.exists()


def test_an_unsafe_store_is_skipped_with_the_reason_and_the_others_are_read(home, tmp_path: Path) -> None:
    paths = home["paths"]
    os.link(paths.rightsizing_db, tmp_path / "second-name.db")  # a hard link: someone else may write it
    os.link(paths.journal, tmp_path / "journal-too.jsonl")
    elsewhere = tmp_path / "elsewhere.db"
    os.rename(paths.home / "service.db", elsewhere)
    (paths.home / "service.db").symlink_to(elsewhere)
    before = listing(paths.home)
    try:
        snap = snapshot(paths)
    finally:
        os.remove(tmp_path / "journal-too.jsonl")  # the fixture's rollback reads the journal
    assert listing(paths.home) == before
    assert set(snap.skipped) == {"proposals", "studies", "applications"}
    assert "UnsafeProposalStore" in snap.skipped["proposals"] and "one link" in snap.skipped["proposals"]
    assert "symbolic link" in snap.skipped["studies"] and "hard link" in snap.skipped["applications"]
    assert set(snap.kinds) == {"recommendations", "profiles", "tuners"}
    assert list(snap.kinds["profiles"]) == [home["profile"]] and list(snap.kinds["tuners"]) == [home["tuner"]]


def test_a_store_held_open_by_a_writer_is_read_without_new_files(home) -> None:
    store = ProfileStore(home["paths"].profiles)
    with store._db.held():  # a live writer: the WAL and its index exist, a reader uses them
        store.put(ProfileStore(home["paths"].profiles).get(home["profile"]))
        names = set(listing(home["paths"].home))
        assert "profiles/profiles.db-wal" in names
        snap = snapshot(home["paths"])
        assert set(listing(home["paths"].home)) == names
    assert len(snap.kinds["profiles"]) == 2 and home["profile"] in snap.kinds["profiles"]


def test_publish_carries_the_data_directory_into_the_fleet_database(home, tmp_path: Path) -> None:
    registry = HostRegistry(f"sqlite:///{tmp_path}/optuna.db")
    try:
        registry.register("db-1", labels={}, facts={})
        state = FleetState(registry)
        snap = publish(state, "db-1", home["paths"])
        got = state.state("db-1")
        for kind in KINDS:
            assert got[kind] == [snap.kinds[kind][key] for key in sorted(snap.kinds[kind])], kind
        assert set(got["updated"]) == set(KINDS)
        rollback(home["app"], paths=home["paths"], catalog=home["catalog"])
        os.remove(home["paths"].rightsizing_db)
        home["paths"].rightsizing_db.symlink_to(tmp_path / "nowhere.db")
        again = publish(state, "db-1", home["paths"])
        got = state.state("db-1")
        assert [a["state"] for a in got["applications"]] == ["rolled_back"]
        assert "proposals" in again.skipped and got["proposals"] == list(snap.kinds["proposals"].values())
    finally:
        registry.close()


def test_an_immutable_read_the_writer_checkpointed_under_is_read_again(home) -> None:
    from experiments.fleet.snapshot import _read_db, _ReadOnlyFile
    from experiments.rightsizing.proposals import UnsafeProposalStore

    paths = home["paths"]
    db = _ReadOnlyFile(paths.rightsizing_db, what="right-sizing store", unsafe=UnsafeProposalStore, failed=None)
    seen: list[int] = []

    def read(conn) -> int:
        n = conn.execute("SELECT COUNT(*) FROM proposals").fetchone()[0]
        if not seen:  # a writer opens, commits and closes (its checkpoint writes the main file) meanwhile
            ProposalStore(paths.rightsizing_db).create(target="cgroup:/b", profile="balanced",
                                                       recommendation={}, values=VALUES)
        seen.append(n)
        return int(n)

    assert _read_db(db, 1, read, 0) == 2
    assert seen == [1, 2] and db.immutable


def test_a_wal_database_with_only_one_of_its_files_is_skipped_and_nothing_is_created(home) -> None:
    paths = home["paths"]
    wal = Path(f"{paths.rightsizing_db}-wal")
    wal.write_bytes(b"")  # -wal without -shm: a writer opening or closing it, and it stays so here
    before = listing(paths.home)
    snap = snapshot(paths)
    assert listing(paths.home) == before
    assert set(snap.skipped) == {"proposals"} and "kept changing" in snap.skipped["proposals"]
    wal.unlink()
    assert list(snapshot(paths).kinds["proposals"]) == [home["proposal"]]
