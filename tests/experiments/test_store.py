"""StudyView read models over a real Optuna store: the comparison with the baseline."""

from __future__ import annotations

import optuna
import pytest

from experiments.study.results import load_view


def _study(tmp_path, rows, *, feasible=None, baseline_fails=False):
    """A two-objective study (throughput up, cost down) whose trial 0 is the baseline; ``rows`` are
    (throughput, cost) per trial; ``feasible[i]`` False gives trial i a violated constraint."""
    url = f"sqlite:///{tmp_path / 'o.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["throughput_rps", "cost_usd_per_hour"])
    study.set_user_attr("knobs", ["x"])
    for i, values in enumerate(rows):
        t = study.ask({"x": optuna.distributions.FloatDistribution(0, 100)})
        if i == 0:
            t.set_user_attr("baseline", True)
        ok = feasible is None or feasible[i]
        t.set_user_attr("constraints_violation", [0.0 if ok else 1.0])
        study._storage.set_trial_system_attr(t._trial_id, "constraints", [0.0 if ok else 1.0])
        if i == 0 and baseline_fails:
            study.tell(t, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(t, list(values))
    return load_view(url, "s")


def test_versus_baseline_lists_dominating_trials_and_the_chosen_change(tmp_path) -> None:
    view = _study(tmp_path, [(1000, 0.050), (1100, 0.040), (800, 0.030), (1020, 0.049), (1500, 0.020)],
                  feasible=[True, True, True, True, False])
    vs = view.versus_baseline(chosen=2)
    assert vs["trial"] == 0 and vs["feasible"] and vs["values"] == {"throughput_rps": 1000, "cost_usd_per_hour": 0.05}
    # trial 4 dominates too, but violates the constraints; 1 improves more than 3
    assert [d["trial"] for d in vs["dominating"]] == [1, 3]
    assert vs["dominating"][0]["change_pct"] == {"throughput_rps": 10.0, "cost_usd_per_hour": -20.0}
    ch = vs["chosen"]
    assert ch["trial"] == 2 and ch["change_pct"] == {"throughput_rps": -20.0, "cost_usd_per_hour": -40.0}
    assert ch["better"] == ["cost_usd_per_hour"] and ch["worse"] == ["throughput_rps"]
    assert ch["verdict"] == "a trade-off: better in cost_usd_per_hour, worse in throughput_rps"
    assert view.versus_baseline(chosen=1)["chosen"]["verdict"] == "better than the baseline on every objective"
    assert view.versus_baseline(chosen=0)["chosen"]["verdict"] == "the baseline itself"
    # the default is the study's own choice, and the pareto report carries the same comparison
    default = view.versus_baseline()
    assert default["chosen"]["trial"] == view.decide().trial.number
    assert view.pareto_report()["versus_baseline"] == default


def test_no_comparison_when_the_baseline_failed(tmp_path) -> None:
    view = _study(tmp_path, [(1000, 0.05), (1100, 0.04)], baseline_fails=True)
    assert view.baseline_trial() is None and view.versus_baseline() is None


@pytest.mark.parametrize("chosen", [None, 1])
def test_nothing_dominates_an_optimal_baseline(tmp_path, chosen) -> None:
    view = _study(tmp_path, [(1000, 0.01), (900, 0.02)])
    vs = view.versus_baseline(chosen=chosen)
    assert vs["dominating"] == []
