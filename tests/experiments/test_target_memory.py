"""``target: memory``: the workload's memory limit is checked before anything starts, with what is allowed."""

import pytest

from experiments.settings import Paths
from experiments.spec import SpecError, load_spec, parse_spec
from experiments.study.prepare import prepare
from experiments.study.target_memory import memory_problems
from tests.experiments.test_target_neighbour import REPO

EXAMPLE = REPO / "experiments" / "specs" / "scenario-block-mmap.yaml"


def _spec(**over):
    spec = {"name": "mem", "workload": {"kind": "fio", "size": "64M"}, "target": {"memory": {"limit": "256M"}},
            "knobs": {"vm.swappiness": {"low": 1, "high": 100}}, "objectives": {"throughput": "maximize"}}
    spec.update(over)
    return spec


def test_the_example_spec_limits_the_reader_below_its_data():
    assert EXAMPLE.read_text().splitlines()[0] == f"# Run: novatune study run experiments/specs/{EXAMPLE.name}"
    spec = load_spec(EXAMPLE)
    assert spec.target is not None and spec.target.memory is not None and spec.target.loop is not None
    assert spec.target.memory.bytes == 1 << 30 < spec.target.loop.bytes  # the data cannot all stay cached
    assert spec.workload.ioengine == "mmap" and spec.workload.fadvise_hint is False
    assert memory_problems(spec) == []


@pytest.mark.parametrize(("limit", "message"), [
    ("1M", "target.memory.limit: Value error, limit must be between 64M and the machine's memory"),
    ("1000G", "limit must be between 64M and the machine's memory"),
    ("lots", "size must be like '256M' or '1G', got 'lots'"),
])
def test_a_limit_out_of_range_is_refused_with_the_range(limit, message):
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(target={"memory": {"limit": limit}}))
    assert message in str(err.value)


@pytest.mark.parametrize(("over", "message"), [
    ({"workload": {"kind": "passive"}, "objectives": {"cpu_util": "minimize"}},
     "target.memory: a passive workload's processes are not novatune's to limit"),
    ({"knobs": {"sizing.memory_gib": {"low": 1, "high": 2}}},
     "knobs.sizing.memory_gib: target.memory fixes the workload's memory limit; tune one or the other"),
    ({"workload": {"kind": "oltp"}, "objectives": {"latency_p99_ms": "minimize"},
      "target": {"memory": {"limit": "256M"}, "neighbour": {"stressor": "cpu", "workers": 1}}},
     "target.memory: with target.neighbour the workload cgroup is the batch job's; use one of them"),
])
def test_a_limit_that_cannot_hold_is_refused_before_anything_starts(tmp_path, over, message):
    with pytest.raises(SpecError) as err:
        prepare(parse_spec(_spec(**over)), paths=Paths(tmp_path / "home"))
    assert message in str(err.value)
    assert not (tmp_path / "home" / "journal.jsonl").exists()

