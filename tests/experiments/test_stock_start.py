"""The stock profiles as a study's first points: the values found with each profile's values on the study's
own knobs; what is outside the spec's range, breaks an ordering or repeats a point is not tried, with why."""

from __future__ import annotations

from pathlib import Path

from actuators import Catalog
from experiments.spec import StudySpec
from experiments.study.resolve import resolve
from experiments.study.stock_start import stock_points

SPEC = {
    "name": "stock",
    "workload": {"kind": "stress-ng", "stressor": "cpu", "workers": 1},
    "knobs": {"vm.swappiness": {"low": 1, "high": 100}, "vm.dirty_ratio": {"low": 10, "high": 40},
              "vm.dirty_background_ratio": {"low": 2, "high": 10}},
    "objectives": {"throughput": "maximize"},
}


def _profile(root: Path, name: str, text: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "tuned.conf").write_text(text)


def test_each_profile_becomes_the_values_found_with_its_own_values_on_the_study_knobs(tmp_path: Path) -> None:
    resolved = resolve(StudySpec.model_validate(SPEC), Catalog())
    baseline = {"vm.swappiness": 60, "vm.dirty_ratio": 20, "vm.dirty_background_ratio": 10}
    _profile(tmp_path, "lat", "[sysctl]\nvm.swappiness=10\nvm.dirty_ratio=10\nvm.dirty_background_ratio=3\n"
                              "net.core.busy_poll=50\n")
    _profile(tmp_path, "thr", "[sysctl]\nvm.dirty_ratio=40\nvm.swappiness=90\n")
    _profile(tmp_path, "wide", "[sysctl]\nvm.dirty_ratio=60\nvm.swappiness=30\n")  # 60 is beyond the spec's 40
    _profile(tmp_path, "outside", "[sysctl]\nvm.dirty_ratio=80\n")
    _profile(tmp_path, "net", "[sysctl]\nnet.core.somaxconn=4096\n")
    _profile(tmp_path, "again", "[main]\ninclude=lat\n")
    _profile(tmp_path, "found", "[sysctl]\nvm.swappiness=60\n")
    _profile(tmp_path, "order", "[sysctl]\nvm.dirty_ratio=10\nvm.dirty_background_ratio=10\n")
    names = ["lat", "thr", "wide", "outside", "net", "again", "found", "order", "missing"]
    points, not_tried = stock_points(resolved, baseline, [tmp_path], names)
    assert points == [
        ("lat", {"vm.swappiness": 10, "vm.dirty_ratio": 10, "vm.dirty_background_ratio": 3}),
        ("thr", {"vm.swappiness": 90, "vm.dirty_ratio": 40, "vm.dirty_background_ratio": 10}),
        ("wide", {"vm.swappiness": 30, "vm.dirty_ratio": 20, "vm.dirty_background_ratio": 10}),
    ]
    assert not_tried == {
        "outside": "every value it sets is outside the spec's range: vm.dirty_ratio=80",
        "net": "sets none of the study's knobs",
        "again": "the same point as the values found or an earlier profile",
        "found": "the same point as the values found or an earlier profile",
        "order": "its values break an ordering of the space: {'vm.dirty_ratio': 10, "
                 "'vm.dirty_background_ratio': 10}",
        "missing": not_tried["missing"],
    }
    assert "no TuneD profile 'missing'" in not_tried["missing"]
