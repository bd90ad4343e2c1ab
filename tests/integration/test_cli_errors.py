"""Bad input through the CLI: a clear message, exit 2, no traceback, nothing changed."""

import json

import pytest

from tests.integration.conftest import novatune, snapshot


def _no_traceback(proc):
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"name": "x", "knobs": {"vm.nosuchknob": {"low": 1, "high": 2}},
          "objectives": {"throughput_rps": "maximize"}},
         "unknown knob"),
        ({"name": "x", "knobs": {"vm.swappiness": {"low": 0, "high": 500}},
          "objectives": {"throughput_rps": "maximize"}},
         "outside the hard safety bounds"),
        ({"name": "x", "knobs": {"thp.enabled": {"choices": ["sometimes"]}},
          "objectives": {"throughput_rps": "maximize"}},
         "allowed choices"),
        ({"name": "x", "knobs": {"vm.swappiness": {"low": 1, "high": 2}}, "objectives": {"speed": "maximize"}},
         "unknown metric; allowed: throughput, throughput_rps, latency_p50_ms"),
        ({"name": "x", "knobs": {"vm.swappiness": {"low": 1, "high": 2}}, "objectives": {"throughput_rps": "maximize"},
          "colour": "blue"}, "colour: unknown field"),
    ],
)
def test_bad_spec_is_refused_before_anything_runs(tmp_path, home, spec, message):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    before = snapshot()
    proc = novatune("study", "run", str(path), home=home, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr, proc.stderr
    _no_traceback(proc)
    assert snapshot() == before
    assert not (home / "optuna.db").exists() or "x" not in novatune("study", "list", "--json", home=home).stdout


def test_unknown_study_and_bad_export(home):
    proc = novatune("study", "export", "nope", "--format", "json", home=home)
    assert proc.returncode == 2 and "no study named 'nope'" in proc.stderr
    _no_traceback(proc)
    proc = novatune("study", "show", "nope", home=home)
    assert proc.returncode == 2
    _no_traceback(proc)


def test_unknown_knob_get(home):
    proc = novatune("knobs", "get", "vm/../../etc/passwd", home=home)
    assert proc.returncode == 2
    _no_traceback(proc)


def test_usage_error_is_not_a_traceback(home):
    proc = novatune("study", "run", home=home)
    assert proc.returncode == 2
    assert "Missing argument" in proc.stderr
    _no_traceback(proc)
