"""MLflow tracking and the study plots, on real local stores (Optuna and MLflow SQLite in tmp).

No machine changes. MLflow's first import and store migration take a few seconds, so the
stores are shared per module.
"""

import json
import logging
from pathlib import Path

import optuna
import pytest

from experiments.settings import Paths
from experiments.study.outcomes import StudyReport
from experiments.study.plots import plot_importance_html, plot_parallel_coordinates
from experiments.study.reporting import finish
from experiments.study.tracking import Tracker, is_remote_uri

PNG = b"\x89PNG\r\n\x1a\n"
OBJECTIVES = ["throughput_rps", "cost_usd_per_hour"]


def _study(url: str, name: str, n: int) -> optuna.Study:
    """``n`` complete trials (int + categorical knobs, two objectives) and one failed trial."""
    study = optuna.create_study(study_name=name, storage=url, directions=["maximize", "minimize"],
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.set_user_attr("objectives", OBJECTIVES)
    study.set_user_attr("knobs", ["vm.swappiness", "thp.enabled"])
    study.set_user_attr("sysctl_keys", {"vm.swappiness": "vm.swappiness"})
    for i in range(n):
        t = study.ask()
        sw = t.suggest_int("vm.swappiness", 1, 100)
        thp = t.suggest_categorical("thp.enabled", ["always", "madvise", "never"])
        t.set_user_attr("applied", {"vm.swappiness": sw, "thp.enabled": thp})
        t.set_user_attr("metrics", {"throughput_rps": 100.0 + sw, "cost_usd_per_hour": 0.01 * (i + 1)})
        t.set_constraint("latency_p95_ms", -1.0)
        study.tell(t, [100.0 + sw + (5 if thp == "never" else 0), 0.01 * (i + 1)])
    t = study.ask()
    t.suggest_int("vm.swappiness", 1, 100)
    study.tell(t, state=optuna.trial.TrialState.FAIL)
    return study


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return Paths(tmp_path_factory.mktemp("home")).ensure()


@pytest.fixture(scope="module")
def study(home):
    return _study(home.optuna_url, "s6", 6)


@pytest.fixture(scope="module")
def client(home):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=home.mlflow_uri)


def _arts(client, run_id, path=None):
    return {a.path for a in client.list_artifacts(run_id, path)}


# ------------------------------------------------------------------- plots
def test_parallel_coordinate_per_objective_html_and_png(study, tmp_path):
    files, skipped = plot_parallel_coordinates(study, OBJECTIVES, tmp_path / "plots", title="s6")
    assert skipped == {}
    names = sorted(f.name for f in files)
    assert names == sorted(f"parallel_coordinate-{o}.{ext}" for o in OBJECTIVES for ext in ("html", "png"))
    for f in files:
        data = f.read_bytes()
        if f.suffix == ".html":
            assert b"plotly" in data and b"vm.swappiness" in data
            assert b"cdn.plot.ly" not in data.split(b"<body>")[0]  # plotly.js embedded: works offline
        else:
            assert data.startswith(PNG)


@pytest.mark.parametrize("n", [0, 1])
def test_parallel_coordinate_skips_tiny_studies(home, tmp_path, n):
    study = _study(home.optuna_url, f"tiny{n}", n)
    files, skipped = plot_parallel_coordinates(study, OBJECTIVES, tmp_path, title="tiny")
    assert files == []
    assert set(skipped) == {f"parallel_coordinate-{o}" for o in OBJECTIVES}
    assert all("complete trial" in why for why in skipped.values())


def test_parallel_coordinate_two_trials(home, tmp_path):
    files, skipped = plot_parallel_coordinates(_study(home.optuna_url, "two", 2), OBJECTIVES, tmp_path, title="t")
    assert len(files) == 4 and skipped == {}


def test_importance_html(tmp_path):
    imp = {"throughput_rps": {"vm.swappiness": 0.7, "thp.enabled": 0.3}, "cost_usd_per_hour": {"vm.swappiness": 1.0}}
    path = plot_importance_html(imp, tmp_path / "importance.html", title="imp")
    text = path.read_text()
    assert "plotly" in text and "thp.enabled" in text and "cost_usd_per_hour" in text


# ----------------------------------------------------------------- tracker
def test_is_remote_uri():
    assert is_remote_uri("http://127.0.0.1:5000") and is_remote_uri("HTTPS://mlflow.example")
    assert not is_remote_uri("sqlite:////tmp/m.db") and not is_remote_uri("file:///tmp/mlruns")


def test_tracker_study_trials_artifacts_and_resume(home, client, tmp_path):
    tracker = Tracker(home.mlflow_uri, artifact_root=home.artifacts)
    parent = tracker.start_study("tr", description="tracking test", tags={"novatune.study": "tr"})
    exp = client.get_experiment_by_name("novatune/tr")
    assert exp.tags["mlflow.note.content"] == "tracking test"
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI shows its runs, not GenAI pages
    assert exp.artifact_location == (home.artifacts / "tr").as_uri()  # local store: the data directory

    series = tmp_path / "trial-000-series.csv"
    series.write_text("time,a\n0,1\n")
    ok = tracker.log_trial(
        0, params={"vm.swappiness": 10, "thp.enabled": "never"},
        metrics={"throughput_rps": 100.0, "throughput_rps_ci_low": 95.0, "throughput_rps_ci_high": 104.0,
                 "latency_p95_ms": float("nan")},
        tags={"state": "complete"}, artifacts=[series], started=1_700_000_000.25, finished=1_700_000_042.5)
    bad = tracker.log_trial(1, params={"vm.swappiness": 90}, metrics={},
                            tags={"state": "fail", "failure_reason": "ActuatorError: boom"},
                            artifacts=[tmp_path / "missing.csv"])  # a missing file: warned, not raised
    run = client.get_run(ok)
    assert (run.info.start_time, run.info.end_time) == (1_700_000_000_250, 1_700_000_042_500)  # the trial's own
    assert run.data.params == {"vm.swappiness": "10", "thp.enabled": "never"}
    assert run.data.metrics == {"throughput_rps": 100.0, "throughput_rps_ci_low": 95.0,
                                "throughput_rps_ci_high": 104.0}
    assert run.data.tags["mlflow.parentRunId"] == parent and run.data.tags["state"] == "complete"
    assert _arts(client, ok) == {"trial-000-series.csv"}
    failed = client.get_run(bad)
    assert failed.info.status == "FAILED" and failed.data.tags["failure_reason"] == "ActuatorError: boom"

    export_dir = tmp_path / "export"
    (export_dir / "tuned" / "novatune-tr").mkdir(parents=True)
    (export_dir / "90-novatune.conf").write_text("vm.swappiness = 10\n")
    (export_dir / "tuned" / "novatune-tr" / "tuned.conf").write_text("[sysctl]\nvm.swappiness=10\n")
    png = tmp_path / "pareto_front.png"
    png.write_bytes(PNG)
    tracker.finish_study(metrics={"hypervolume": 1.5}, step_metrics={"hypervolume_per_trial": [0.5, 1.5]},
                         artifacts=[png, (export_dir, "export"), (png, "plots")], tags={"state": "completed"})
    study_run = client.get_run(parent)
    assert study_run.info.status == "FINISHED"
    assert _arts(client, parent) == {"pareto_front.png", "export", "plots"}
    assert _arts(client, parent, "export") == {"export/90-novatune.conf", "export/tuned"}
    assert _arts(client, parent, "export/tuned/novatune-tr") == {"export/tuned/novatune-tr/tuned.conf"}
    assert len(client.get_metric_history(parent, "hypervolume_per_trial")) == 2

    # a new process resumes the same study: same experiment, same parent run, RUNNING again
    again = Tracker(home.mlflow_uri, artifact_root=home.artifacts)
    assert again.resume_study("tr", tags={"resumed_by": "test"}) is True
    assert again.parent_run_id == parent and again.experiment_id == exp.experiment_id
    reopened = client.get_run(parent)
    assert reopened.info.status == "RUNNING"
    assert reopened.data.tags["resumed_by"] == "test" and reopened.data.tags["novatune.resumed"] == "1"
    later = again.log_trial(2, params={"vm.swappiness": 20}, metrics={"throughput_rps": 1.0},
                            tags={"state": "complete"})
    assert client.get_run(later).data.tags["mlflow.parentRunId"] == parent
    again.finish_study(metrics={}, step_metrics={}, artifacts=[], tags={}, status="FINISHED")
    assert client.get_run(parent).info.status == "FINISHED"
    runs = client.search_runs([exp.experiment_id], "tags.`novatune.kind` = 'study'")
    assert [r.info.run_id for r in runs] == [parent]

    assert Tracker(home.mlflow_uri).resume_study("never-ran", tags={}) is False


def test_an_experiment_made_without_the_kind_tag_gets_it(home, client):
    """Studies recorded before the tag existed open on their runs once they are resumed or rerun."""
    client.create_experiment("novatune/old", tags={"novatune.study": "old"})
    Tracker(home.mlflow_uri, artifact_root=home.artifacts).start_study("old", description="", tags={})
    assert client.get_experiment_by_name("novatune/old").tags["mlflow.experimentKind"] == "custom_model_development"


# --------------------------------------------- the runner's study report
def _fake_write_export(view, fmt, dest, *, trial=None):
    """``export.write_export``'s contract: tuned -> a profile directory, else a file in ``dest``."""
    if fmt == "broken":
        raise RuntimeError("this format cannot be written")
    path = dest / ("tuned.conf" if fmt == "tuned" else f"novatune-{fmt}.txt")
    path.write_text(f"{fmt} of {view.name}\n")
    return [path]


@pytest.mark.parametrize("api", ["write_export", "real"])
def test_finish_logs_plots_and_every_export(home, client, study, caplog, monkeypatch, api):
    """The study's end on a stored study: plots under plots/, exports under export/, the knee JSON; with a
    failing export format (skipped, the others still written) and with the real export module."""
    from experiments.deploy import export

    if api == "write_export":
        monkeypatch.setattr(export, "FORMATS", ("json", "broken", "tuned", "sysctl"))
        monkeypatch.setattr(export, "write_export", _fake_write_export)
    workdir = home.study_dir("s6")
    workdir.mkdir(parents=True, exist_ok=True)
    tracker = Tracker(home.mlflow_uri, artifact_root=home.artifacts)
    parent = tracker.start_study("s6", description="", tags={})
    report = StudyReport("s6", "completed", [], {}, {}, OBJECTIVES)
    with caplog.at_level(logging.WARNING):
        finish(home, report, tracker, workdir)
    assert not [r for r in caplog.records if "could not finish" in r.getMessage()], caplog.text
    assert report.knee is not None and json.loads((workdir / "export-knee.json").read_text())["study"] == "s6"

    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    root = _arts(client, parent)
    assert {"export-knee.json", "plots", "export"} <= root
    plots = _arts(client, parent, "plots")
    drawn = {f"plots/{p}.{ext}" for p in ("pareto_front", "convergence", "importance") for ext in ("png", "html")}
    assert drawn <= plots
    for o in OBJECTIVES:
        assert {f"plots/parallel_coordinate-{o}.html", f"plots/parallel_coordinate-{o}.png"} <= plots
    exported = _arts(client, parent, "export")
    if api == "write_export":
        assert exported == {"export/json", "export/sysctl", "export/tuned"}
        assert _arts(client, parent, "export/json") == {"export/json/novatune-json.txt"}
        assert _arts(client, parent, "export/tuned/novatune-s6") == {"export/tuned/novatune-s6/tuned.conf"}
        assert "could not export s6 as broken" in caplog.text
    else:
        assert exported == {f"export/{fmt}" for fmt in export.FORMATS}, caplog.text
        for fmt in export.FORMATS:
            assert _arts(client, parent, f"export/{fmt}"), fmt
    assert run.data.tags["plots_skipped"] == "none"
    html = client.download_artifacts(parent, f"plots/parallel_coordinate-{OBJECTIVES[0]}.html", str(home.home))
    assert "plotly" in Path(html).read_text()
