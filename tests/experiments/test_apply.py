"""apply / rollback / history / status on a fake /proc + /sys tree (no machine changes)."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import optuna
import pytest

from actuators import ActuatorError, Catalog, ChangeSession, Journal, SysRoot, recover
from actuators.journal import KEPT_EVENT
from actuators.sysroot import SysRoot as _SysRoot
from experiments.deploy.applications import ApplicationNotFound, ApplyConflict, ApplyError, history, status
from experiments.deploy.apply import apply_config, apply_trial
from experiments.deploy.config_file import ConfigError, ConfigFile, load_config
from experiments.deploy.rollback import rollback
from experiments.settings import Paths
from tests.actuators.conftest import PYTHON, REPO, build_fake_tree, tree_bytes


@pytest.fixture
def root(tmp_path: Path) -> SysRoot:
    return SysRoot(build_fake_tree(tmp_path / "root"))


@pytest.fixture
def cat(root: SysRoot) -> Catalog:
    return Catalog(root)


@pytest.fixture
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "home")


def _value(root: SysRoot, rel: str) -> str:
    return root.read(rel).strip()


def test_dry_run_writes_nothing_not_even_the_journal(root, cat, paths) -> None:
    before = tree_bytes(root.root)
    app = apply_config({"vm.swappiness": 10, "thp.enabled": "madvise"}, paths=paths, dry_run=True, source="t",
                       catalog=cat)
    assert app.state == "dry_run"
    rows = {k.knob: (k.old, k.new, k.changes) for k in app.knobs}
    assert rows == {"vm.swappiness": (60, 10, True), "thp.enabled": ("madvise", "madvise", False)}
    assert tree_bytes(root.root) == before
    assert not paths.journal.exists()


def test_apply_journals_old_value_before_the_write_and_marks_kept(root, cat, paths, monkeypatch) -> None:
    seen: list[tuple[str, list[str]]] = []
    real_write = _SysRoot.write

    def write(self, rel, data):  # every write: the journal must already hold its intent (fsynced)
        seen.append((rel, [r["event"] for r in Journal(paths.journal).records() if r.get("target") == rel]))
        return real_write(self, rel, data)

    monkeypatch.setattr(_SysRoot, "write", write)
    app = apply_config({"vm.swappiness": 10, "vm.stat_interval": 3}, paths=paths, source="unit", catalog=cat)
    assert seen == [("proc/sys/vm/swappiness", ["intent"]), ("proc/sys/vm/stat_interval", ["intent"])]
    assert (_value(root, "proc/sys/vm/swappiness"), _value(root, "proc/sys/vm/stat_interval")) == ("10", "3")
    assert re.fullmatch(r"apply-\d{8}-\d{6}-[0-9a-f]{4}", app.id) and app.state == "applied"
    recs = [r for r in Journal(paths.journal).records() if r.get("run") == app.id]
    assert [r["event"] for r in recs] == ["begin", "intent", "applied", "intent", "applied", KEPT_EVENT]
    assert recs[1]["old"] == "60\n" and recs[0]["application"]["source"] == "unit"
    assert len(Journal.open_entries(recs)) == 2  # open on purpose


def test_recover_keeps_application_and_rollback_restores_exact_bytes(root, cat, paths) -> None:
    before = tree_bytes(root.root)
    app = apply_config({"vm.swappiness": 10, "vm.dirty_ratio": 40, "vm.dirty_background_ratio": 30},
                       paths=paths, source="unit", catalog=cat)
    rep = recover(Journal(paths.journal), root=root, force=True)
    assert rep.kept == [app.id] and rep.restored == []
    assert _value(root, "proc/sys/vm/dirty_background_ratio") == "30"
    st = status(paths, catalog=cat)
    assert [a["id"] for a in st["active"]] == [app.id] and st["drift"] == []
    rb = rollback(None, paths=paths, catalog=cat)
    assert rb.id == app.id and not rb.forced
    old = {k.knob: k.old for k in rb.knobs}
    assert old == {"vm.swappiness": 60, "vm.dirty_ratio": 20, "vm.dirty_background_ratio": 10}
    assert tree_bytes(root.root) == before
    assert Journal.open_entries(Journal(paths.journal).records()) == []
    (h,) = history(paths)
    assert h.state == "rolled_back" and h.rolled_back_at and h.as_dict()["changed"]
    assert status(paths, catalog=cat) == {"active": [], "drift": []}
    with pytest.raises(ApplyError, match=f"{app.id} was already rolled back at "):
        rollback(app.id, paths=paths, catalog=cat)
    with pytest.raises(ApplicationNotFound, match="no active application"):
        rollback(None, paths=paths, catalog=cat)


def test_rollback_refuses_drift_unless_forced(root, cat, paths) -> None:
    app = apply_config({"vm.swappiness": 10}, paths=paths, source="unit", catalog=cat)
    root.write("proc/sys/vm/swappiness", "33")  # someone changed it since
    st = status(paths, catalog=cat)
    assert st["drift"] == [f"{app.id}: vm.swappiness"] and st["active"][0]["knobs"][0]["live"] == 33
    with pytest.raises(ApplyError, match=r"vm\.swappiness: is 33 now, applied 10") as e:
        rollback(app.id, paths=paths, catalog=cat)
    assert "--force" in str(e.value)
    assert _value(root, "proc/sys/vm/swappiness") == "33"
    rb = rollback(app.id, paths=paths, force=True, catalog=cat)
    assert rb.forced and rb.knobs[0].live == 33 and rb.knobs[0].drift
    assert _value(root, "proc/sys/vm/swappiness") == "60"


def test_unknown_id_lists_known_ids(cat, paths) -> None:
    a = apply_config({"vm.swappiness": 10}, paths=paths, source="unit", catalog=cat)
    with pytest.raises(ApplicationNotFound, match=f"no application 'apply-nope'; known: {a.id}"):
        rollback("apply-nope", paths=paths, catalog=cat)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"vm.swappiness": 10, "vm.nope": 1}, r"unknown knob 'vm.nope'.*allowed: vm.swappiness"),
        ({"vm.swappiness": 10, "vm.dirty_ratio": 500},
         r"vm.dirty_ratio: 500 is outside the hard bounds; allowed: integers in \[5, 80\]"),
        ({"sizing.vcpus": 1.0, "affinity.cpus": 1},
         r"nothing in unit can be applied to stay on this host \(allowed: knobs of scope host, device, netns\)"
         r"(.|\n)*sizing.vcpus=1.0: not applied to stay: .*CPUQuota=100%(.|\n)*affinity.cpus=1: .*CPUAffinity=0"),
        ({"vm.swappiness": 10, "sizing.vcpus": 99.0, "vm.dirty_ratio": 500}, r"vm.dirty_ratio: 500 is outside"),
        ({"vm.swappiness": 10, "ksm.run": 1, "kernel.numa_balancing": 1}, r"ksm.run: not available here"),
    ],
)
def test_bad_values_change_nothing(root, cat, paths, values, message) -> None:
    (root.root / "sys/kernel/mm/ksm/run").unlink()  # a knob this "machine" does not have
    before = tree_bytes(root.root)
    with pytest.raises(ApplyError, match=message) as e:
        apply_config(values, paths=paths, source="unit", catalog=cat)
    assert "nothing was changed" in str(e.value)
    assert tree_bytes(root.root) == before and not paths.journal.exists()


def test_run_bound_knobs_are_not_applied_and_say_how_to_deploy(root, cat, paths) -> None:
    """An export of a study that tuned its workload's sizing: the host knobs stay, each run-bound knob is
    listed with the systemd option it becomes, and history, status and rollback only see the host knobs."""
    before = tree_bytes(root.root)
    cfg = ConfigFile(source="best.json", kind="config", study="quickstart",
                     values={"sizing.vcpus": 0.93, "affinity.cpus": 2, "vm.swappiness": 10, "thp.enabled": "never"})
    dry = apply_config(cfg, paths=paths, dry_run=True, source=cfg.source, catalog=cat)
    assert [n.knob for n in dry.not_applied] == ["sizing.vcpus", "affinity.cpus"]
    assert tree_bytes(root.root) == before and not paths.journal.exists()
    app = apply_config(cfg, paths=paths, source=cfg.source, catalog=cat)
    assert app.state == "applied" and app.changed == ["vm.swappiness", "thp.enabled"]
    hints = {n.knob: (n.scope, n.deploy) for n in app.not_applied}
    assert hints["sizing.vcpus"][0] == "cgroup" and "`CPUQuota=93%`" in hints["sizing.vcpus"][1]
    assert hints["affinity.cpus"][0] == "process" and "`CPUAffinity=0-1`" in hints["affinity.cpus"][1]
    assert all("novatune study export quickstart --format systemd" in d for _, d in hints.values())
    (h,) = history(paths)
    assert [n.knob for n in h.not_applied] == ["sizing.vcpus", "affinity.cpus"]
    assert status(paths, catalog=cat)["drift"] == []
    rollback(None, paths=paths, catalog=cat)
    assert tree_bytes(root.root) == before


def test_a_spec_is_refused(tmp_path, cat, paths) -> None:
    p = tmp_path / "spec.yaml"
    p.write_text("name: s\nknobs:\n  vm.swappiness: {low: 0, high: 100}\nobjectives: {throughput_rps: maximize}\n")
    with pytest.raises(ApplyError, match="not a study spec"):
        apply_config(load_config(p), paths=paths, source="x", catalog=cat)


def test_refused_while_a_live_run_holds_the_knob(root, cat, paths) -> None:
    journal = Journal(paths.journal)
    session = ChangeSession(journal, run_id="study-live-1", trial=3)
    journal.begin("study-live-1")
    session.apply(cat.get("vm.swappiness"), 30)
    try:
        with pytest.raises(ApplyError, match=r"vm.swappiness: held by the live run 'study-live-1' \(pid \d+\)"):
            apply_config({"vm.swappiness": 10, "vm.stat_interval": 2}, paths=paths, source="x", catalog=cat)
        assert _value(root, "proc/sys/vm/stat_interval") == "1"
        # a knob it does not hold is fine
        app = apply_config({"vm.stat_interval": 2}, paths=paths, source="x", catalog=cat)
    finally:
        assert session.restore_all() == []
    # and rollback is refused while a live run changed the knob after the application
    session2 = ChangeSession(journal, run_id="study-live-2", trial=0)
    session2.apply(cat.get("vm.stat_interval"), 2)  # same value: a no-op, journals nothing
    session2.apply(cat.get("vm.swappiness"), 20)
    try:
        rollback(app.id, paths=paths, catalog=cat)  # swappiness is not the application's: fine
    finally:
        session2.restore_all()
    assert _value(root, "proc/sys/vm/stat_interval") == "1"


def test_refused_over_another_application_and_a_dead_unrecovered_run(tmp_path, root, cat, paths) -> None:
    first = apply_config({"vm.swappiness": 10}, paths=paths, source="first", catalog=cat)
    with pytest.raises(ApplyError, match=f"held by application {first.id}.*novatune rollback {first.id}"):
        apply_config({"vm.swappiness": 20}, paths=paths, source="second", catalog=cat)
    dry = apply_config({"vm.swappiness": 20}, paths=paths, source="second", dry_run=True, catalog=cat)
    assert f"held by application {first.id}" in dry.knobs[0].held_by and "would be refused" in dry.note
    same = apply_config({"vm.swappiness": 10}, paths=paths, source="second", catalog=cat)
    assert same.state == "unchanged" and len(history(paths)) == 1
    rollback(first.id, paths=paths, catalog=cat)
    script = tmp_path / "dead.py"
    script.write_text(textwrap.dedent("""
        import sys
        sys.path.insert(0, sys.argv[3])
        from actuators import Catalog, ChangeSession, Journal, SysRoot
        j = Journal(sys.argv[2]); j.begin("crashed")
        ChangeSession(j, run_id="crashed", trial=0).apply(Catalog(SysRoot(sys.argv[1])).get("vm.swappiness"), 5)
    """))
    subprocess.run([PYTHON, str(script), str(root.root), str(paths.journal), REPO], check=True, timeout=60)
    with pytest.raises(ApplyError, match="dead run 'crashed'.*novatune recover"):
        apply_config({"vm.swappiness": 20}, paths=paths, source="third", catalog=cat)
    recover(Journal(paths.journal), root=root)
    assert apply_config({"vm.swappiness": 20}, paths=paths, source="third", catalog=cat).state == "applied"


def test_failed_write_midway_restores_and_raises(root, cat, paths, monkeypatch) -> None:
    before = tree_bytes(root.root)
    real_write = _SysRoot.write

    def write(self, rel, data):
        if rel == "proc/sys/vm/stat_interval" and data.strip() == "3":
            raise ActuatorError("cannot write proc/sys/vm/stat_interval: Device or resource busy")
        return real_write(self, rel, data)

    monkeypatch.setattr(_SysRoot, "write", write)
    with pytest.raises(ApplyError, match="Device or resource busy; every knob written so far was restored"):
        apply_config({"vm.swappiness": 10, "vm.stat_interval": 3}, paths=paths, source="unit", catalog=cat)
    assert tree_bytes(root.root) == before
    (h,) = history(paths)
    assert h.state == "failed" and "apply failed" in h.note
    assert Journal.open_entries(Journal(paths.journal).records()) == []
    with pytest.raises(ApplicationNotFound):
        rollback(None, paths=paths, catalog=cat)


def test_history_newest_first(cat, paths) -> None:
    a = apply_config({"vm.swappiness": 10}, paths=paths, source="a", catalog=cat)
    b = apply_config({"vm.stat_interval": 4}, paths=paths, source="b", catalog=cat)
    assert [x.id for x in history(paths)] == [b.id, a.id]
    assert rollback(None, paths=paths, catalog=cat).id == b.id  # the latest active one
    assert [(x.id, x.state) for x in history(paths)] == [(b.id, "rolled_back"), (a.id, "applied")]
    json.dumps([x.as_dict() for x in history(paths)])
    rollback(None, paths=paths, catalog=cat)


def test_apply_trial_of_a_study(root, cat, paths) -> None:
    paths.home.mkdir(parents=True)
    study = optuna.create_study(study_name="s", storage=paths.optuna_url, directions=["maximize"])
    study.set_user_attr("objectives", ["throughput_rps"])
    study.set_user_attr("knobs", ["vm.swappiness", "thp.enabled"])
    for sw in (10, 20):
        study.enqueue_trial({"vm.swappiness": sw, "thp.enabled": "never"})
        t = study.ask()
        t.suggest_int("vm.swappiness", 0, 100)
        t.suggest_categorical("thp.enabled", ["always", "madvise", "never"])
        study.tell(t, [float(sw)])
    dry = apply_trial("s", 0, paths=paths, dry_run=True, catalog=cat)
    assert dry.source == "study s trial 0"
    assert {k.knob: k.new for k in dry.knobs} == {"vm.swappiness": 10, "thp.enabled": "never"}
    app = apply_trial("s", 1, paths=paths, catalog=cat)
    assert app.source == "study s trial 1" and _value(root, "proc/sys/vm/swappiness") == "20"
    rollback(app.id, paths=paths, catalog=cat)
    assert _value(root, "proc/sys/vm/swappiness") == "60"


def test_an_export_document_is_accepted_and_conflicts_are_apply_conflicts(root, cat, paths) -> None:
    doc = {"format": "novatune.config/v1", "study": "s", "trial": 1, "knobs": {"vm.swappiness": 10}}
    app = apply_config(doc, paths=paths, source="POST /tuning/apply", catalog=cat)
    assert app.state == "applied" and _value(root, "proc/sys/vm/swappiness") == "10"
    with pytest.raises(ApplyConflict, match="held by application"):
        apply_config({**doc, "knobs": {"vm.swappiness": 20}}, paths=paths, source="again", catalog=cat)
    with pytest.raises(ConfigError, match="unknown field"):
        apply_config({**doc, "colour": "red"}, paths=paths, source="x", catalog=cat)
    rollback(id=app.id, paths=paths, catalog=cat)
    with pytest.raises(ApplyConflict, match="already rolled back"):
        rollback(id=app.id, paths=paths, catalog=cat)
