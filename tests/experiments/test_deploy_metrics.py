"""The /metrics families the deploy/ alerts watch: rolled-back changes, applications, drift, profiler overhead.

Applications are made on a fake /proc + /sys tree (no machine changes); the figures come from the stored
records, so a new collector (a restarted service) reports the same.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actuators import Catalog, SysRoot
from collectors.profiler.model import Profile, ProfileMeta
from collectors.profiler.store import ProfileStore
from experiments.deploy.apply import apply_config
from experiments.deploy.metrics import ROLLBACK_REASONS, ChangesCollector
from experiments.deploy.rollback import rollback
from experiments.profiling.metrics import ProfilerOverheadCollector
from experiments.settings import Paths
from experiments.validate.model import ValidationReport
from experiments.validate.store import new_validation_id, save_report
from tests.actuators.conftest import build_fake_tree


@pytest.fixture
def root(tmp_path: Path) -> SysRoot:
    return SysRoot(build_fake_tree(tmp_path / "root"))


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "home")


def _scrape(*collectors: object) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name -> {sorted label pairs: value} of one scrape of ``collectors``."""
    reg = CollectorRegistry(auto_describe=False)
    for c in collectors:
        reg.register(c)  # type: ignore[arg-type]
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def _by(fams: dict, name: str, label: str) -> dict[str, float]:
    return {dict(k)[label]: v for k, v in fams[name].items()}


def test_empty_data_directory_reports_zeros_and_creates_nothing(paths, root) -> None:
    fams = _scrape(ChangesCollector(paths, catalog=Catalog(root)), ProfilerOverheadCollector(paths))
    assert _by(fams, "novatune_changes_rolled_back_total", "reason") == dict.fromkeys(ROLLBACK_REASONS, 0.0)
    assert set(_by(fams, "novatune_applications", "state").values()) == {0.0}
    assert fams["novatune_drift_knobs"] == {(): 0.0}
    assert fams["novatune_changes_store_up"] == {(): 1.0} and fams["novatune_profiler_store_up"] == {(): 1.0}
    assert "novatune_profiler_slowdown_ratio" not in fams
    assert not paths.home.exists()


def test_rollbacks_by_reason_applications_and_drift_survive_a_restart(paths, root) -> None:
    cat = Catalog(root)
    first = apply_config({"vm.swappiness": 10}, paths=paths, source="unit", catalog=cat)
    rollback(first.id, paths=paths, catalog=cat)
    forced = apply_config({"vm.swappiness": 20}, paths=paths, source="unit", catalog=cat)
    root.write("proc/sys/vm/swappiness", "33\n")  # changed by hand after the apply
    collector = ChangesCollector(paths, catalog=cat)
    assert _scrape(collector)["novatune_drift_knobs"] == {(): 1.0}
    rollback(forced.id, paths=paths, catalog=cat, force=True)
    auto = apply_config({"vm.stat_interval": 3}, paths=paths, source="autotune t1 cycle 2", catalog=cat)
    rollback(auto.id, paths=paths, catalog=cat)
    apply_config({"vm.swappiness": 15}, paths=paths, source="unit", catalog=cat)  # stays applied, no drift
    for decision in ("rolled_back", "inconclusive", "kept", "rolled_back"):
        save_report(paths, ValidationReport(id=new_validation_id(paths), decision=decision, reason="unit",
                                            source="unit", values={"vm.swappiness": 5}))
    for c in (collector, ChangesCollector(paths, catalog=cat)):  # the same after a restart
        fams = _scrape(c)
        assert _by(fams, "novatune_changes_rolled_back_total", "reason") == {
            "requested": 1.0, "forced": 1.0, "autotune": 1.0, "validation_failed": 2.0,
            "validation_inconclusive": 1.0}
        assert _by(fams, "novatune_applications", "state") == {"applied": 1.0, "rolled_back": 3.0, "failed": 0.0,
                                                               "applying": 0.0}
        assert fams["novatune_drift_knobs"] == {(): 0.0}


def test_unreadable_journal_keeps_the_scrape(paths, root, caplog) -> None:
    paths.home.mkdir(parents=True)
    paths.journal.mkdir()  # a directory where the journal file should be
    fams = _scrape(ChangesCollector(paths, catalog=Catalog(root)))
    assert fams == {"novatune_changes_store_up": {(): 0.0}}
    assert "cannot read the applied changes" in caplog.text


def test_profiler_overhead_from_the_newest_window(paths) -> None:
    store = ProfileStore(paths.home / "profiles")
    for start, slowdown in ((1000.0, 0.5), (2000.0, 0.25)):
        meta = ProfileMeta(start=start, duration_s=10.0, overhead={"est_slowdown_pct": slowdown,
                                                                    "pyspy_cpu_pct": 2.0, "budget_pct": 1.0})
        store.put(Profile(meta=meta))
    fams = _scrape(ProfilerOverheadCollector(paths))
    assert fams["novatune_profiler_slowdown_ratio"] == {(): 0.0025}
    assert fams["novatune_profiler_cpu_ratio"] == {(): 0.02}
    assert fams["novatune_profiler_budget_ratio"] == {(): 0.01}
    assert fams["novatune_profiler_window_end_timestamp_seconds"] == {(): 2010.0}


def test_unreadable_profile_store_keeps_the_scrape(paths) -> None:
    (paths.home / "profiles").mkdir(parents=True)
    (paths.home / "profiles" / "profiles.db").write_bytes(b"not a database" * 100)
    assert _scrape(ProfilerOverheadCollector(paths)) == {"novatune_profiler_store_up": {(): 0.0}}
