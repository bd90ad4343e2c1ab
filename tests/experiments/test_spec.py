"""Spec validation: every bad input is refused with a message saying what is allowed."""

import json
from pathlib import Path

import pytest

from experiments.spec import SpecError, load_spec, parse_spec

QUICKSTART = Path(__file__).resolve().parents[2] / "experiments" / "specs" / "quickstart.yaml"


def _base(**over):
    spec = {
        "name": "t",
        "knobs": {"vm.swappiness": {"low": 10, "high": 60}},
        "objectives": {"throughput_rps": "maximize"},
    }
    spec.update(over)
    return spec


def test_quickstart_spec_is_valid():
    spec = load_spec(QUICKSTART)
    assert spec.name == "quickstart"
    assert spec.objectives == {"throughput_rps": "maximize", "cost_usd_per_hour": "minimize"}
    assert spec.constraints["latency_p95_ms"].max == 50
    assert 12 <= spec.budget.trials <= 20  # a few minutes on 2 vCPUs, with a Pareto front to choose from


def test_unknown_top_level_field_lists_allowed():
    with pytest.raises(SpecError) as e:
        parse_spec(_base(trails=3))
    assert "trails: unknown field" in str(e.value)
    assert "allowed here: name, description, workload, target, knobs" in str(e.value)


def test_unknown_nested_field_lists_allowed():
    with pytest.raises(SpecError) as e:
        parse_spec(_base(trial={"warmup": 1}))
    assert "trial.warmup: unknown field; allowed here: warmup_s, measure_s, repeats" in str(e.value)


@pytest.mark.parametrize(
    "knob, message",
    [
        ({"low": 1}, "needs both low and high"),
        ({"low": 5, "high": 1}, "low 5.0 is above high 1.0"),
        ({"low": 1, "high": 2, "choices": ["a"]}, "either low/high or choices"),
        ({}, "give a range"),
        ({"choices": []}, "at least 1 item"),
        ({"low": 1, "high": 2, "stepp": 1}, "unknown field; allowed here: low, high, step, log, choices"),
    ],
)
def test_bad_knob_forms(knob, message):
    with pytest.raises(SpecError) as e:
        parse_spec(_base(knobs={"vm.swappiness": knob}))
    assert message in str(e.value)


def test_bad_objective_direction_and_constraint():
    with pytest.raises(SpecError) as e:
        parse_spec(_base(objectives={"throughput_rps": "up"}, constraints={"latency_p95_ms": {"max": 1, "min": 0}}))
    text = str(e.value)
    assert "objectives.throughput_rps" in text and "'maximize' or 'minimize'" in text
    assert "exactly one of max or min" in text


@pytest.mark.parametrize("name", ["../etc", "a b", "", "x" * 100])
def test_bad_study_names(name):
    with pytest.raises(SpecError, match="name"):
        parse_spec(_base(name=name))


@pytest.mark.parametrize("knob", ["vm/../../etc/passwd", "block..scheduler", "vm.swap\x00piness"])
def test_knob_names_with_path_characters(knob):
    with pytest.raises(SpecError, match="characters a knob name cannot have"):
        parse_spec(_base(knobs={knob: {"low": 1, "high": 2}}))


def test_budget_and_trial_bounds():
    with pytest.raises(SpecError) as e:
        parse_spec(_base(budget={"trials": 0}, trial={"repeats": 0, "measure_s": -1}))
    text = str(e.value)
    assert "budget.trials" in text and "trial.repeats" in text and "trial.measure_s" in text


def test_files(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(_base()))
    assert load_spec(p).name == "t"
    bad = tmp_path / "s.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="file not found"):
        load_spec(tmp_path / "missing.yaml")
    with pytest.raises(SpecError, match="unsupported file type"):
        load_spec(tmp_path / "spec.txt")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="must be a mapping"):
        load_spec(lst)


# ---------------------------------------------------------------- workload kinds
def test_workload_kind_defaults_to_oltp_when_omitted():
    assert parse_spec(_base(workload={"workers": 3})).workload.kind == "oltp"
    assert parse_spec(_base()).workload.kind == "oltp"


@pytest.mark.parametrize(
    "kind, extra",
    [("fio", {"rw": "randwrite", "bs": "8k"}), ("pgbench", {"clients": 4}), ("redis-benchmark", {"requests": 500}),
     ("wrk", {"connections": 8}), ("iperf3", {"streams": 2}), ("stress-ng", {"stressor": "matrix"}),
     ("passive", {"pids": [1]})],
)
def test_every_workload_kind_parses_with_its_options(kind, extra):
    w = parse_spec(_base(workload={"kind": kind, **extra})).workload
    assert w.kind == kind
    for k, v in extra.items():
        assert getattr(w, k) == v


def test_unknown_workload_kind_lists_the_kinds():
    with pytest.raises(SpecError) as e:
        parse_spec(_base(workload={"kind": "jmeter"}))
    msg = str(e.value)
    assert "unknown workload kind 'jmeter'" in msg
    assert "oltp, fio, pgbench, redis-benchmark, wrk, iperf3, stress-ng, passive" in msg


def test_unknown_workload_option_names_the_options_of_that_kind():
    with pytest.raises(SpecError) as e:
        parse_spec(_base(workload={"kind": "fio", "runtime": 3}))
    assert "workload.runtime: unknown field; allowed here: kind, rw, bs, iodepth, size" in str(e.value)


def test_bad_workload_option_value_is_located():
    with pytest.raises(SpecError) as e:
        parse_spec(_base(workload={"kind": "pgbench", "clients": 0}))
    assert "workload.clients:" in str(e.value) and "greater than or equal to 1" in str(e.value)


def test_steady_metric_must_be_a_series_metric():
    spec = parse_spec(_base(trial={"steady": {"metric": "target_cpu_cores", "max_cv": 0.1}}))
    assert spec.trial.steady.metric == "target_cpu_cores" and spec.trial.steady.window_s == 3.0
    with pytest.raises(SpecError) as e:
        parse_spec(_base(trial={"steady": {"metric": "throughput"}}))
    assert "unknown series metric 'throughput'; allowed: host_cpu_util_pct" in str(e.value)
    with pytest.raises(SpecError) as e:
        parse_spec(_base(trial={"steady": {"window": 3}}))
    assert "trial.steady.window: unknown field; allowed here: metric, window_s, max_cv" in str(e.value)
