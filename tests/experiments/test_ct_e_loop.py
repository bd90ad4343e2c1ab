"""The continuous tuner's loop: convergence, drift, rollback on a performance drop, restart, stop.

Most tests replace the measurement and the study (``probe.measure`` / ``probe.search``) with scripted ones,
so the loop's decisions are checked on known figures; the validated apply is a test double (part B's
engine is not in this tree): after the merge, ``test_a_stop_restores_a_validation_in_progress`` and
``test_a_performance_drop_rolls_the_last_kept_step_back`` should also run with
``experiments.validate.engine.validated_apply``. A kept step really applies ``vm.vfs_cache_pressure`` through the
journal (``apply_config``); every test ends with it back (checked).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from experiments.autotune import probe
from experiments.autotune.loop import Autotuner
from experiments.autotune.model import AutotuneError, AutotuneNotFound, AutotuneOptions
from experiments.autotune.service import history, rollback_step, summaries
from experiments.autotune.steps import snapshot
from experiments.deploy.applications import history as app_history
from experiments.deploy.apply import apply_config
from experiments.deploy.rollback import rollback
from experiments.settings import Paths, Settings
from experiments.spec import parse_spec
from experiments.validate.model import ValidationReport, ValidationRequest

KNOB = "vm.vfs_cache_pressure"


def _spec(**extra: Any) -> Any:
    return parse_spec({"name": "ct-e", "workload": {"kind": "oltp", "workers": 1, "clients": 2},
                       "knobs": {KNOB: {"low": 10, "high": 1000}}, "objectives": {"throughput_rps": "maximize"},
                       "trial": {"warmup_s": 0.3, "measure_s": 1.0}, "sampler": {"name": "random", "seed": 3},
                       **extra})


@pytest.fixture
def paths(tmp_path: Path) -> Any:
    p = Paths(tmp_path / "home").ensure()
    original = snapshot([KNOB])[KNOB]
    yield p
    for app in app_history(p):  # whatever a failing test left applied
        if app.state == "kept":
            rollback(app.id, paths=p, force=True)
    assert snapshot([KNOB])[KNOB] == original


class Script:
    """Scripted measurements (throughput per cycle) and study outcomes (candidate per cycle)."""

    def __init__(self, throughput: dict[int, float], candidates: dict[int, dict[str, Any]] | None = None) -> None:
        self.throughput = throughput
        self.candidates = candidates or {}
        self.measured = 0
        self.searched: list[str] = []

    def measure(self, plan: Any, *, paths: Paths, name: str, windows: int, stop: Any = None) -> probe.Measured:
        self.measured += 1
        base = self.throughput.get(self.measured, self.throughput[max(k for k in self.throughput
                                                                      if k <= self.measured)])
        values = [base * (1 + 0.004 * ((i * 7) % 5 - 2)) for i in range(windows)]
        return probe.Measured({"throughput_rps": values, "host_cpu_util_pct": [50.0 + i % 2 for i in range(windows)]},
                              snapshot([KNOB]))

    def search(self, plan: Any, *, paths: Paths, name: str, min_gain: float, stop: Any = None) -> probe.StudyOutcome:
        self.searched.append(name)
        cand = self.candidates.get(len(self.searched))
        return probe.StudyOutcome(name, snapshot([KNOB]), cand, "scripted" if cand else "no better configuration")


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(s: Script) -> Script:
        monkeypatch.setattr(probe, "measure", s.measure)
        monkeypatch.setattr(probe, "search", s.search)
        return s
    return install


def applying_double(paths: Paths, decision: str = "kept") -> Any:
    """Applies through apply_config (a real application) and keeps it, or restores and reports ``decision``."""
    calls: list[ValidationRequest] = []

    def validate(req: ValidationRequest) -> ValidationReport:
        calls.append(req)
        app = apply_config(req.values, paths=paths, source=req.source)
        if decision != "kept":
            rollback(app.id, paths=paths)
        return ValidationReport(id=f"v{len(calls)}", decision=decision, reason="double", source=req.source,
                                values=req.values, application=app.id if decision == "kept" else None)
    validate.calls = calls  # type: ignore[attr-defined]
    return validate


def _opts(**kw: Any) -> AutotuneOptions:
    return AutotuneOptions(**({"interval_s": 0, "windows": 5, "converge_after": 2} | kw))


def test_converged_after_k_quiet_cycles_then_only_rechecks(paths, script) -> None:
    s = script(Script({1: 100.0}))
    t = Autotuner(_spec(), paths=paths, options=_opts(cycles=4), validate=applying_double(paths),
                  settings=Settings())
    meta = t.run()
    cycles = history(paths, t.id)["cycles"]
    assert [c["decision"] for c in cycles] == ["no_change", "no_change", "none", "none"]
    assert len(s.searched) == 2 and meta["converged"] and meta["state"] == "stopped"
    assert [c["trust_scale"] for c in cycles] == [0.5, 0.25, 0.25, 0.25]  # shrinks on no improvement
    assert [c["state"] for c in cycles][1:] == ["converged"] * 3
    assert summaries(paths)[0]["converged"] is True


def test_drift_of_the_load_triggers_a_re_tune(paths, script) -> None:
    s = script(Script({1: 100.0, 3: 180.0}))
    t = Autotuner(_spec(), paths=paths, options=_opts(cycles=4), validate=applying_double(paths),
                  settings=Settings())
    t.run()
    cycles = history(paths, t.id)["cycles"]
    assert [c["drift"]["drifted"] for c in cycles] == [False, False, True, False]
    assert "throughput_rps" in cycles[2]["drift"]["reason"] and not cycles[2]["drift"]["fell"]
    assert cycles[2]["study"] is not None and len(s.searched) == 4  # re-tuned after convergence, then searching on
    assert cycles[2]["trust_scale"] == 1.0  # the full region again
    assert cycles[1]["state"] == "converged" and cycles[3]["state"] != "converged"


def test_a_kept_step_is_an_application_with_before_and_after_snapshots(paths, script) -> None:
    before = snapshot([KNOB])[KNOB]
    new = 37 if before != 37 else 38
    script(Script({1: 100.0}, {1: {KNOB: new}}))
    v = applying_double(paths)
    t = Autotuner(_spec(), paths=paths, options=_opts(cycles=1), validate=v, settings=Settings())
    meta = t.run()
    (step,) = history(paths, t.id)["steps"]
    assert step["decision"] == "kept" and step["before"] == {KNOB: before} and step["after"] == {KNOB: new}
    assert meta["kept_steps"] == [step["id"]] and meta["trust_scale"] == 1.5  # grows on a kept step
    # kept only when shown better: the primary objective is guarded at keep_limit (default 0 %)
    assert v.calls[0].guards == (("throughput_rps", 0.0),) and Path(v.calls[0].spec_path).is_file()
    undone = rollback_step(paths, step["id"])  # what `novatune rollback STEP` and the API do
    assert undone is not None and snapshot([KNOB])[KNOB] == before
    assert history(paths, t.id)["steps"][-1]["undoes"] == step["id"]


def test_the_primary_objective_is_guarded_at_the_keep_limit_the_others_at_the_drop_limit(paths, script) -> None:
    script(Script({1: 100.0}, {1: {KNOB: 41}}))
    v = applying_double(paths, decision="rolled_back")
    spec = _spec(objectives={"throughput_rps": "maximize", "latency_p95_ms": "minimize"})
    t = Autotuner(spec, paths=paths, options=_opts(cycles=1, keep_limit=-0.02, drop_limit=-0.15), validate=v,
                  settings=Settings())
    t.run()
    assert v.calls[0].guards == (("throughput_rps", -0.02), ("latency_p95_ms", -0.15))
    with pytest.raises(AutotuneError, match="keep limit must be in"):
        AutotuneOptions(keep_limit=0.05).check()


def test_a_performance_drop_rolls_the_last_kept_step_back(paths, script) -> None:
    before = snapshot([KNOB])[KNOB]
    script(Script({1: 100.0, 2: 100.0, 3: 70.0}, {1: {KNOB: 41 if before != 41 else 42}}))
    t = Autotuner(_spec(), paths=paths, options=_opts(cycles=3, converge_after=5), validate=applying_double(paths),
                  settings=Settings())
    meta = t.run()
    h = history(paths, t.id)
    assert [(s["kind"], s["decision"]) for s in h["steps"]] == [("apply", "kept"), ("rollback", "rolled_back")]
    assert h["steps"][1]["undoes"] == h["steps"][0]["id"] and h["cycles"][2]["drift"]["fell"]
    assert snapshot([KNOB])[KNOB] == before and meta["kept_steps"] == []


def test_a_rolled_back_validation_changes_nothing(paths, script) -> None:
    before = snapshot([KNOB])[KNOB]
    script(Script({1: 100.0}, {1: {KNOB: 55 if before != 55 else 56}}))
    t = Autotuner(_spec(), paths=paths, options=_opts(cycles=1), validate=applying_double(paths, "rolled_back"),
                  settings=Settings())
    meta = t.run()
    (step,) = history(paths, t.id)["steps"]
    assert step["decision"] == "rolled_back" and step["after"] == {KNOB: before} and meta["kept_steps"] == []


def test_the_history_survives_a_restart(paths, script) -> None:
    script(Script({1: 100.0}))
    first = Autotuner(_spec(), paths=paths, options=_opts(cycles=2, converge_after=3), validate=applying_double(paths),
                      settings=Settings())
    first.run()
    again = Autotuner(_spec(), paths=paths, options=_opts(cycles=2, converge_after=3), tuner_id=first.id,
                      validate=applying_double(paths), settings=Settings())
    assert again.cycle == 2 and again.quiet == 2 and again.reference is not None
    meta = again.run()
    h = history(paths, first.id)
    assert [c["cycle"] for c in h["cycles"]] == [1, 2, 3, 4] and meta["restarts"] == 1 and meta["converged"]
    with pytest.raises(AutotuneNotFound):
        Autotuner(_spec(), paths=paths, options=_opts(), tuner_id="at-20000101-000000-abcd", settings=Settings())


def test_a_torn_last_line_is_skipped(paths, script) -> None:
    script(Script({1: 100.0}))
    t = Autotuner(_spec(), paths=paths, options=_opts(cycles=1), validate=applying_double(paths), settings=Settings())
    t.run()
    with t.store.history_file.open("a") as f:
        f.write('{"record": "cycle", "cyc')
    assert len(history(paths, t.id)["cycles"]) == 1


def test_a_stop_restores_a_validation_in_progress(paths, script) -> None:
    before = snapshot([KNOB])[KNOB]
    script(Script({1: 100.0}, {1: {KNOB: 23 if before != 23 else 24}}))
    holder: list[Autotuner] = []
    applied = threading.Event()

    def engine_like(req: ValidationRequest) -> ValidationReport:  # the engine's contract: stop -> restore
        app = apply_config(req.values, paths=paths, source=req.source)
        applied.set()
        assert holder[0].stop_event.wait(30), "the stop never reached the validation"
        rollback(app.id, paths=paths)
        return ValidationReport(id="v", decision="rolled_back", reason="stopped: restored", source=req.source,
                                values=req.values)

    t = Autotuner(_spec(), paths=paths, options=_opts(cycles=5, interval_s=0), validate=engine_like,
                  settings=Settings())
    holder.append(t)
    th = threading.Thread(target=t.run)
    th.start()
    assert applied.wait(30)
    assert snapshot([KNOB])[KNOB] != before  # the change is live while it is validated
    t.stop()
    th.join(30)
    meta = t.store.meta()
    assert not th.is_alive() and meta["state"] == "stopped" and meta["cycle"] == 1 and meta["kept_steps"] == []
    assert snapshot([KNOB])[KNOB] == before


def test_bad_options_are_refused_with_what_is_allowed() -> None:
    with pytest.raises(AutotuneError, match=r"study-trials must be in \[1, 200\], got 0; windows must be in"):
        AutotuneOptions(study_trials=0, windows=2).check()


@pytest.mark.slow
def test_a_real_cycle_measures_and_runs_a_bounded_study(paths) -> None:
    """The real study machinery: the OLTP workload measured, a 2-trial study in the trust region."""
    before = snapshot([KNOB])[KNOB]
    seen: list[ValidationRequest] = []

    def double(req: ValidationRequest) -> ValidationReport:
        seen.append(req)
        return ValidationReport(id="v", decision="rolled_back", reason="double", source=req.source, values={})

    t0 = time.monotonic()
    t = Autotuner(_spec(), paths=paths, options=AutotuneOptions(cycles=1, interval_s=0, windows=3, study_trials=2),
                  validate=double, settings=Settings(), min_gain=-1.0)
    meta = t.run()
    (cycle,) = history(paths, t.id)["cycles"]
    assert cycle["error"] is None and len(cycle["measured"]["throughput_rps"]) == 3
    assert cycle["summary"]["throughput_rps"]["median"] > 0 and cycle["study"] == f"{t.id}-c1-s"
    from experiments.study.results import load_view
    view = load_view(paths.optuna_url, cycle["study"])
    assert len(view.complete) == 2 and view.complete[0].user_attrs.get("baseline")
    assert view.attrs["spec"]["trust_region"]["max_step"] == 0.2  # the default region around the current value
    import mlflow  # the cycle's study is tracked, without plots (CPU the measured machine does not spend)

    client = mlflow.MlflowClient(tracking_uri=paths.mlflow_uri)
    (run,) = [r for r in client.search_runs([client.get_experiment_by_name(f"novatune/{cycle['study']}")
                                             .experiment_id]) if r.data.tags.get("novatune.kind") == "study"]
    assert client.list_artifacts(run.info.run_id, "plots") == [] and "plots off" in run.data.tags["plots_skipped"]
    assert meta["state"] == "stopped" and snapshot([KNOB])[KNOB] == before and time.monotonic() - t0 < 300
    assert len(seen) == (1 if cycle["candidate"] else 0)


def test_the_duration_bounds_a_cycle_in_progress(paths, script) -> None:
    s = script(Script({1: 100.0}))
    saw_stop: list[bool] = []

    def long_search(plan: Any, *, paths: Paths, name: str, min_gain: float, stop: Any = None) -> probe.StudyOutcome:
        saw_stop.append(stop.wait(60))  # a study that would run long: the duration's end reaches it
        from experiments.study.outcomes import Interrupted
        raise Interrupted("stop requested")

    s.search = long_search  # type: ignore[method-assign]
    probe.search = long_search  # the script fixture restores the module attribute
    t = Autotuner(_spec(), paths=paths, options=_opts(duration_s=1), validate=applying_double(paths),
                  settings=Settings())
    meta = t.run()
    assert saw_stop == [True] and meta["state"] == "stopped" and meta["reason"] == "duration of 1 s reached"
    (cycle,) = history(paths, t.id)["cycles"]
    assert cycle["decision"] == "stopped"


def test_failing_cycles_back_off_then_fail(paths, script, monkeypatch) -> None:
    from experiments.autotune import loop
    from experiments.study.manager import StudyConflict

    def busy(plan: Any, **kw: Any) -> probe.Measured:
        raise StudyConflict("vm.vfs_cache_pressure is held by study x")

    monkeypatch.setattr(probe, "measure", busy)
    monkeypatch.setattr(loop, "FIRST_BACKOFF_S", 0.01)
    t = Autotuner(_spec(), paths=paths, options=_opts(), validate=applying_double(paths), settings=Settings())
    meta = t.run()
    cycles = history(paths, t.id)["cycles"]
    assert len(cycles) == loop.MAX_FAILURES and meta["state"] == "failed" and "held by study x" in meta["reason"]
    assert all(c["decision"] == "error" and "StudyConflict" in c["error"] for c in cycles)
