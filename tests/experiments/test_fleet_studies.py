"""Fleet studies in a storage: what ``novatune fleet submit`` creates, what an agent lists, the budget's room."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from experiments.fleet.studies import FLEET_ATTR, fleet_studies, room, submit
from experiments.settings import Paths, Settings
from experiments.spec import SpecError, parse_spec
from experiments.study.prepare import prepare

SPEC = {"name": "web", "workload": {"kind": "stress-ng", "stressor": "cpu", "workers": 1},
        "knobs": {"vm.swappiness": {"low": 1, "high": 100}}, "objectives": {"throughput": "maximize"},
        "trial": {"warmup_s": 0, "measure_s": 0.5, "repeats": 1}, "budget": {"trials": 4},
        "sampler": {"name": "tpe", "seed": 1}}


@pytest.fixture
def storage(tmp_path: Path) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'shared.db'}")


def _plan(tmp_path: Path, **over):
    return prepare(parse_spec({**SPEC, **over}), paths=Paths(tmp_path / "home"), settings=Settings())


def test_submit_records_the_spec_the_selector_and_the_budget_and_nothing_runs(tmp_path: Path, storage) -> None:
    name = submit(_plan(tmp_path), storage, name="web-1", selector={"role": "web"})
    study = optuna.load_study(study_name=name, storage=storage)
    assert study.trials == []  # the agents run the trials, not the submitter
    attrs = study.user_attrs
    assert attrs["state"] == "running" and attrs["objectives"] == ["throughput"]
    assert attrs[FLEET_ATTR]["selector"] == {"role": "web"} and attrs[FLEET_ATTR]["trials"] == 4
    assert parse_spec(attrs["spec"]).knobs.keys() == {"vm.swappiness"}  # an agent rebuilds the spec from it
    [listed] = fleet_studies(storage)
    assert (listed.name, listed.selector, listed.trials, listed.state) == ("web-1", {"role": "web"}, 4, "running")


def test_a_taken_name_is_refused_and_plain_studies_are_not_fleet_studies(tmp_path: Path, storage) -> None:
    optuna.create_study(study_name="local", storage=storage)  # a host's own study in the same storage
    submit(_plan(tmp_path), storage, name="web-1", selector={})
    with pytest.raises(SpecError, match="a study named 'web-1' exists already"):
        submit(_plan(tmp_path), storage, name="web-1", selector={})
    assert [s.name for s in fleet_studies(storage)] == ["web-1"]
    generated = submit(_plan(tmp_path), storage, name=None, selector={})
    assert generated.startswith("web-fleet-") and generated != "web-1"


def test_room_counts_every_trial_taken_anywhere(tmp_path: Path, storage) -> None:
    name = submit(_plan(tmp_path, budget={"trials": 3}), storage, name="web-1", selector={})
    study = optuna.load_study(study_name=name, storage=storage)
    assert room(study, 3) == 3
    running = study.ask()  # another host's trial in progress uses the budget too
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)
    assert room(study, 3) == 1
    study.tell(running, 1.0)
    study.tell(study.ask(), 2.0)
    assert room(study, 3) == 0


def test_a_fleet_wide_trial_is_the_mean_over_the_hosts_that_measured_it_with_its_spread() -> None:
    from experiments.fleet.fleetwide import aggregate

    evals = {"a": {"state": "complete", "values": [100.0, 2.0], "metrics": {"rps": 100.0, "cost": 2.0, "p99": 5.0},
                   "seconds": 3.0},
             "b": {"state": "complete", "values": [80.0, 2.0], "metrics": {"rps": 80.0, "cost": 2.0}, "seconds": 4.0},
             "c": {"state": "fail", "values": [None, None], "metrics": {}, "reason": "WorkloadError: boom"}}
    tr, summary = aggregate(7, {"x": 1}, evals, ["rps", "cost"])
    assert tr.state == "complete" and tr.number == 7 and tr.seconds == 4.0
    assert tr.metrics == {"cost": 2.0, "rps": 90.0}  # only the metrics every measuring host has
    assert sorted(tr.samples) == [[80.0, 2.0], [100.0, 2.0]]  # one row per host, as repeats are
    assert summary["measured"] == ["a", "b"] and summary["failed"] == {"c": "WorkloadError: boom"}
    assert summary["rps"]["min"] == 80.0 and summary["rps"]["max"] == 100.0
    assert summary["rps"]["stdev"] == pytest.approx(14.142, abs=1e-3)
    assert tr.reason == "measured on 2 of 3 hosts"
    failed, _ = aggregate(8, {}, {"c": evals["c"]}, ["rps", "cost"])
    assert failed.state == "fail" and "c: WorkloadError: boom" in failed.reason


def test_a_trial_wants_help_until_enough_hosts_claimed_it_and_never_from_one_host_twice(tmp_path: Path,
                                                                                          storage) -> None:
    from experiments.fleet.fleetwide import wanting_help

    study = optuna.create_study(study_name="w", storage=storage)
    t = study.ask()
    t.suggest_int("x", 0, 10)
    assert wanting_help(study, "a") is None  # a shared-mode trial wants no help
    t.set_user_attr("wanted", 2)
    t.set_user_attr("claim@a", 1.0)
    assert wanting_help(study, "a") is None  # a claimed it already
    assert wanting_help(study, "b").number == t.number
    t.set_user_attr("claim@b", 2.0)
    assert wanting_help(study, "c") is None  # two hosts claimed it: enough
    study.tell(t, 1.0)
    assert wanting_help(study, "c") is None


def test_submit_refuses_an_unknown_mode_and_a_host_count_that_does_not_fit(tmp_path: Path, storage) -> None:
    with pytest.raises(SpecError, match="fleet mode 'per-rack' is unknown; allowed: shared, fleet-wide"):
        submit(_plan(tmp_path), storage, name="a", selector={}, mode="per-rack")
    with pytest.raises(SpecError, match="allowed 1 in shared mode"):
        submit(_plan(tmp_path), storage, name="a", selector={}, hosts_per_trial=3)
    with pytest.raises(SpecError, match=">= 1 in fleet-wide mode"):
        submit(_plan(tmp_path), storage, name="a", selector={}, mode="fleet-wide", hosts_per_trial=0)
    assert optuna.get_all_study_names(storage) == []  # nothing created
    submit(_plan(tmp_path), storage, name="a", selector={}, mode="fleet-wide", hosts_per_trial=3)
    [listed] = fleet_studies(storage)
    assert (listed.mode, listed.hosts_per_trial) == ("fleet-wide", 3)


def test_per_host_studies_of_one_fleet_study_share_a_target_that_names_no_host(tmp_path: Path) -> None:
    import dataclasses
    import socket

    plan = _plan(tmp_path)
    assert plan.target_key.startswith(socket.gethostname() + ":")  # a local study: this host's target
    fleet = dataclasses.replace(plan, fleet="web-1")
    where, what = fleet.target_key.split(":", 1)
    assert where == "fleet/web-1" and what == plan.target_key.split(":", 1)[1]  # the same workload, any host
    assert dataclasses.replace(plan, fleet="web-2").target_key != fleet.target_key  # one fleet study's hosts only
