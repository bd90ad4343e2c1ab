"""Exports and study views on a real Optuna SQLite storage (no machine changes)."""

import json

import optuna
import pytest

from experiments.export import ExportError, render
from experiments.store import StudyNotFound, load_view


@pytest.fixture()
def url(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["throughput_rps", "cost_usd_per_hour"])
    study.set_user_attr("knobs", ["vm.swappiness", "thp.enabled"])
    study.set_user_attr("sysctl_keys", {"vm.swappiness": "vm.swappiness"})
    rows = [  # throughput, cost, p95 violation (<=0 feasible)
        ((100.0, 0.02), 10, "never", -1.0),
        ((300.0, 0.05), 20, "always", -1.0),  # knee-ish
        ((320.0, 0.09), 30, "madvise", -1.0),
        ((900.0, 0.01), 40, "never", 5.0),  # would dominate, but violates the SLA
    ]
    for (thr, cost), sw, thp, viol in rows:
        study.enqueue_trial({"vm.swappiness": sw, "thp.enabled": thp})
        t = study.ask()
        t.suggest_int("vm.swappiness", 0, 100)
        t.suggest_categorical("thp.enabled", ["always", "madvise", "never"])
        t.set_constraint("latency_p95_ms", viol)
        study.tell(t, [thr, cost])
    failed = study.ask()
    study.tell(failed, state=optuna.trial.TrialState.FAIL)
    return url


def test_knee_ignores_infeasible_and_failed(url):
    view = load_view(url, "s")
    front = {t.number for t in view.front_trials()}
    assert 3 not in front and 4 not in front
    assert front == {0, 1, 2}
    knee = view.knee_trial()
    assert knee.number == 1


def test_json_export(url):
    doc = json.loads(render(load_view(url, "s"), "json"))
    assert doc["trial"] == 1 and doc["chosen_by"].endswith("(knee of the Pareto front)")
    assert doc["objectives"] == {"throughput_rps": 300.0, "cost_usd_per_hour": 0.05}
    assert doc["knobs"] == {"vm.swappiness": 20, "thp.enabled": "always"}


def test_sysctl_export_only_has_sysctl_lines(url):
    text = render(load_view(url, "s"), "sysctl", trial=2)
    body = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert body == ["vm.swappiness = 30"]
    assert "thp.enabled=madvise" in text  # mentioned in a comment, not as a setting


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fmt": "toml"}, "unknown format 'toml'; allowed: json, sysctl"),
        ({"fmt": "json", "trial": 3}, "violates the study's constraints"),
        ({"fmt": "json", "trial": 4}, "is fail, not complete"),
        ({"fmt": "json", "trial": 99}, "has no trial 99"),
    ],
)
def test_export_errors(url, kwargs, message):
    view = load_view(url, "s")
    fmt = kwargs.pop("fmt")
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render(view, fmt, **kwargs)


def test_unknown_study_lists_existing(url):
    with pytest.raises(StudyNotFound, match="studies here: s"):
        load_view(url, "nope")
