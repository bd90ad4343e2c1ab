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
