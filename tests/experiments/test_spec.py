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
    assert 15 <= spec.budget.trials <= 20


def test_unknown_top_level_field_lists_allowed():
    with pytest.raises(SpecError) as e:
        parse_spec(_base(trails=3))
    assert "trails: unknown field" in str(e.value)
    assert "allowed here: name, description, workload, knobs" in str(e.value)


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
