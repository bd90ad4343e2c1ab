"""experiments.recommend: finished studies become measured recommendations; the last list is what accept uses."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from experiments.recommend.engine import NotAcceptable, Recommendations, UnknownRecommendation
from experiments.recommend.sources import study_advice
from experiments.settings import Paths, Settings
from optimizer.advice import Advice, Change


def _study(paths: Paths, name: str, rows: list[tuple[int, float]], *, state: str = "completed") -> None:
    """A study on vm.swappiness whose trial 0 is the baseline; rows: (swappiness, throughput)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=paths.optuna_url, directions=["maximize"])
    study.set_user_attr("objectives", ["throughput_rps"])
    study.set_user_attr("knobs", ["vm.swappiness"])
    study.set_user_attr("state", state)
    for i, (sw, thr) in enumerate(rows):
        t = study.ask()
        t.suggest_int("vm.swappiness", 0, 200)
        t.set_user_attr("applied", {"vm.swappiness": sw})
        t.set_user_attr("samples", [[thr * 0.99], [thr], [thr * 1.01]])
        if i == 0:
            t.set_user_attr("baseline", True)
        study.tell(t, [thr])


@pytest.fixture()
def paths(tmp_path: Path) -> Paths:
    return Paths(tmp_path / "home").ensure()


def test_a_finished_study_that_beat_its_baseline_is_a_measured_recommendation(paths: Paths) -> None:
    _study(paths, "better", [(60, 100.0), (10, 130.0), (100, 90.0)])
    advice, notes = study_advice(paths)
    assert notes == []
    [a] = advice
    assert a.advisor == "study" and a.measured
    assert a.changes == (Change("vm.swappiness", 10, 60),)
    assert a.expected_impact == pytest.approx(0.30, abs=0.01)
    assert a.metric == "throughput_rps"


def test_no_recommendation_from_a_study_that_found_nothing_better_or_did_not_finish(paths: Paths) -> None:
    _study(paths, "worse", [(60, 100.0), (10, 80.0)])
    _study(paths, "running", [(60, 100.0), (10, 150.0)], state="running")
    advice, _ = study_advice(paths)
    assert advice == []


def test_collect_ranks_remembers_and_get_finds_by_id(paths: Paths) -> None:
    _study(paths, "better", [(60, 100.0), (10, 130.0)])
    rec = Recommendations(paths, Settings())
    rl = rec.collect(sources=("studies",))
    assert [a.advisor for a in rl.advice] == ["study"]
    a = rl.advice[0]
    assert rec.get(a.id) == a  # read back from recommendations.json, whole
    with pytest.raises(UnknownRecommendation, match=a.id):
        rec.get("0000000000")


def test_collect_refuses_unknown_sources(paths: Paths) -> None:
    with pytest.raises(ValueError, match="allowed: advisors, rightsizing, studies"):
        Recommendations(paths, Settings()).collect(sources=("astrology",))


def test_only_what_novatune_can_apply_on_this_machine_is_acceptable(paths: Paths) -> None:
    rec = Recommendations(paths, Settings())
    manual = Advice(advisor="numa", title="bind", why="w", manual="numactl --membind=0 svc")
    with pytest.raises(NotAcceptable, match="manual action: numactl"):
        rec.acceptable(manual, root="/")
    bound = Advice(advisor="pinning", title="pin", why="w", changes=(Change("affinity.cpus", "1"),), target="pid:7")
    with pytest.raises(NotAcceptable, match="bound to pid:7"):
        rec.acceptable(bound, root="/")
    host = Advice(advisor="io", title="ra", why="w", changes=(Change("block.vda.read_ahead_kb", 512),))
    with pytest.raises(NotAcceptable, match="tree /x"):
        rec.acceptable(host, root="/x")
    rec.acceptable(host, root="/")  # no error
