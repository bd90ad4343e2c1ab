"""The workload registry: spec sections -> workloads, and the spec mirrors each workload's options."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from collectors.errors import CollectorError, WorkloadError
from collectors.passive.allowed import TargetRefused
from collectors.passive.target import PassiveWorkload
from collectors.workloads.base import Workload
from collectors.workloads.oltp import OltpService
from collectors.workloads.registry import TOOL_WORKLOADS, build_workload
from experiments.spec import WORKLOAD_SPECS, parse_spec
from experiments.study.metric_names import RUNNER_METRICS, allowed_metrics


def _spec(workload: dict) -> BaseModel:
    return parse_spec({"name": "t", "workload": workload, "knobs": {"vm.swappiness": {"low": 1, "high": 2}},
                       "objectives": {"cost_usd_per_hour": "minimize"}}).workload


@pytest.mark.parametrize("kind", sorted(TOOL_WORKLOADS))
def test_spec_options_and_defaults_mirror_the_tool_workload(kind):
    model = WORKLOAD_SPECS[kind]
    fields = {k: f.default for k, f in model.model_fields.items() if k != "kind"}
    expected = dict(TOOL_WORKLOADS[kind].OPTIONS)
    assert set(fields) == set(expected)
    for k, v in expected.items():
        got = fields[k]
        if k == "tests":  # a list in YAML, a tuple in the class
            got = model.model_fields[k].default_factory()
            assert tuple(got) == tuple(v)
            continue
        assert got == v, k


def test_every_spec_kind_builds_a_workload_without_starting_anything(tmp_path: Path):
    for kind in WORKLOAD_SPECS:
        opts = {"pids": [1]} if kind == "passive" else {}
        w = build_workload(_spec({"kind": kind, **opts}), tmp_path / kind)
        assert isinstance(w, Workload) and w.kind == kind
        assert "throughput" in w.metric_names() or kind == "passive"
        if kind == "passive":
            with pytest.raises(TargetRefused, match="pid 1 "):
                w.pids()  # built, not started; and pid 1 is never a target: not even listed for knobs
        else:
            assert w.pids() == []
    assert isinstance(build_workload(_spec({}), tmp_path), OltpService)
    assert isinstance(build_workload(_spec({"kind": "passive", "pids": [1]}), tmp_path), PassiveWorkload)


@pytest.mark.parametrize(
    "workload, message",
    [
        ({"kind": "fio", "rw": "sideways"}, "rw must be one of"),
        ({"kind": "fio", "filename": "/dev/vda"}, "fio"),
        ({"kind": "stress-ng", "stressor": "fork-bomb"}, "stressor"),
        ({"kind": "wrk", "url": "http://example.com/"}, "url"),
        ({"kind": "redis-benchmark", "tests": ["flushall"]}, "tests must be a non-empty subset"),
        ({"kind": "passive"}, "at least one"),
        ({"kind": "passive", "pids": [1], "cgroup": "x"}, "pids"),
    ],
)
def test_bad_workload_options_are_refused_with_what_is_allowed(tmp_path: Path, workload, message):
    with pytest.raises((WorkloadError, CollectorError), match=message):
        build_workload(_spec(workload), tmp_path)


def test_allowed_metrics_are_the_workloads_then_the_runners():
    names = allowed_metrics(("throughput", "latency_p95_ms", "target_threads"))
    assert names[:3] == ["throughput", "latency_p95_ms", "target_threads"]
    assert set(RUNNER_METRICS) <= set(names) and len(names) == len(set(names))
