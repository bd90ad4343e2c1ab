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
    assert doc["trial"] == 1 and doc["chosen_by"].startswith("trial 1: knee of the Pareto front among 3 feasible")
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


def _noisy_study(url, rows, *, choose=None):
    """rows: (swappiness, [[throughput, cost] per repeat], p95 violation)."""
    study = optuna.create_study(study_name="n", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["throughput_rps", "cost_usd_per_hour"])
    study.set_user_attr("knobs", ["vm.swappiness"])
    if choose:
        study.set_user_attr("spec", {"choose": choose})
    for sw, samples, viol in rows:
        t = study.ask()
        t.suggest_int("vm.swappiness", 0, 100)
        t.set_user_attr("applied", {"vm.swappiness": sw})
        t.set_user_attr("samples", samples)
        t.set_user_attr("metrics", {"latency_p95_ms": 10 + viol})
        t.set_constraint("latency_p95_ms", viol)
        med = [sorted(col)[len(col) // 2] for col in zip(*samples)]
        study.tell(t, med)
    return load_view(url, "n")


def test_duplicates_pool_and_a_difference_inside_the_noise_is_a_tie(tmp_path):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    view = _noisy_study(url, [
        (10, [[1000, 0.02], [900, 0.02], [1100, 0.02]], -1),   # noisy, same cost
        (20, [[1020, 0.02], [950, 0.02], [1080, 0.02]], -1),   # "better" median, inside the noise
        (10, [[1050, 0.02]], -1),                              # a re-measurement of trial 0
        (30, [[500, 0.01], [510, 0.01], [505, 0.01]], -1),     # clearly cheaper, clearly slower
    ])
    configs = view.configurations()
    assert [c.trial.number for c in configs] == [0, 1, 3]
    assert [t.number for t in configs[0].members] == [0, 2]  # trial 2 measured trial 0's configuration
    assert configs[0].estimate.n == 4
    d = view.decide(rule="best", target="throughput_rps")
    assert d.trial.number == 0  # pooled median 1025 (4 measurements) against 1020
    assert d.measured_by == [0, 2]
    assert d.equivalent == [1]  # not called better on a difference inside the noise
    assert set(d.noisy_front) >= {0, 1, 3}


def test_the_study_choose_rule_drives_the_export(tmp_path):
    url = f"sqlite:///{tmp_path / 'c.db'}"
    rows = [(10, [[1000, 0.05]], -1), (20, [[800, 0.03]], -1), (30, [[400, 0.01]], -1)]
    view = _noisy_study(url, rows, choose={"rule": "max-perf-under-budget", "budget": {"cost_usd_per_hour": 0.04}})
    doc = json.loads(render(view, "json"))
    assert doc["trial"] == 1 and "cost_usd_per_hour <= 0.04" in doc["chosen_by"]
    with pytest.raises(ValueError, match="no feasible trial has cost_usd_per_hour <= 0.001; closest is trial 2"):
        _ = view.decide(rule="max-perf-under-budget", budget={"cost_usd_per_hour": 0.001})
