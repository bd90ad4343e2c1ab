"""``target: neighbour``: bad input is refused with what is allowed, before anything starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from experiments.settings import Paths
from experiments.spec import SpecError, load_spec, parse_spec
from experiments.study.prepare import prepare

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "experiments" / "specs" / "scenario-noisy-neighbour.yaml"


def _spec(**over):
    spec = {
        "name": "nb",
        "target": {"neighbour": {"stressor": "cpu", "workers": 2}},
        "knobs": {"sched.nice": {"low": 0, "high": 19}},
        "objectives": {"latency_p99_ms": "minimize", "neighbour_bogo_ops_per_s": "maximize"},
    }
    spec.update(over)
    return spec


def test_the_example_spec_is_valid_and_says_how_to_run_it():
    assert EXAMPLE.read_text().splitlines()[0] == f"# Run: novatune study run experiments/specs/{EXAMPLE.name}"
    spec = load_spec(EXAMPLE)
    assert spec.target is not None and spec.target.neighbour is not None
    assert spec.workload.kind == "oltp" and spec.objectives["neighbour_bogo_ops_per_s"] == "maximize"
    assert list(type(spec).model_fields).index("target") == list(type(spec).model_fields).index("workload") + 1


@pytest.mark.parametrize(("target", "message"), [
    ({"neighbour": {"workers": 0}}, "target.neighbour.workers: Input should be greater than or equal to 1"),
    ({"neighbour": {"workers": 17}}, "target.neighbour.workers: Input should be less than or equal to 16"),
    ({"neighbour": {"stressor": "hdd"}}, "target.neighbour.stressor: Input should be 'cpu', 'matrix'"),
    ({"neighbour": {"cmd": "rm -rf /"}}, "target.neighbour.cmd: unknown field; allowed here: stressor, workers"),
    ({"neighbours": {}}, "target.neighbours: unknown field; allowed here: neighbour"),
])
def test_a_bad_neighbour_is_refused_with_what_is_allowed(target, message):
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(target=target))
    assert message in str(err.value)


def test_a_workload_that_cannot_have_a_neighbour_is_refused_before_anything_starts(tmp_path):
    spec = parse_spec(_spec(workload={"kind": "stress-ng"}, objectives={"throughput": "maximize"}))
    with pytest.raises(SpecError) as err:
        prepare(spec, paths=Paths(tmp_path / "home"))
    msg = str(err.value)
    assert "target.neighbour: the stress-ng workload cannot have a neighbour" in msg
    assert "allowed workload kinds: oltp" in msg


def test_the_neighbour_metric_needs_a_neighbour(tmp_path):
    spec = parse_spec(_spec(target=None))
    with pytest.raises(SpecError, match="objectives.neighbour_bogo_ops_per_s: unknown metric; allowed: "):
        prepare(spec, paths=Paths(tmp_path / "home"))
    plan = prepare(parse_spec(_spec()), paths=Paths(tmp_path / "home"))
    assert {"neighbour_bogo_ops_per_s", "neighbour_bogo_ops"} <= set(plan.metric_names)


def test_the_cli_refuses_a_bad_neighbour_with_exit_2_and_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(_spec(target={"neighbour": {"workers": 500}})))
    proc = subprocess.run([sys.executable, "-m", "experiments", "study", "run", str(path)], cwd=REPO,
                          env={**os.environ, "NOVATUNE_HOME": str(tmp_path / "home"), "COLUMNS": "300"},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "target.neighbour.workers" in proc.stderr and "less than or equal to 16" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "home" / "journal.jsonl").exists() or "neighbour" not in (
        tmp_path / "home" / "journal.jsonl").read_text()
