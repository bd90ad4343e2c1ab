"""A justified study exports only the changes with a measured effect, each with its evidence, and the
decision names the reduced trial; a tampered record carries nothing into a file."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest

from experiments.deploy.config_file import ConfigError, load_config
from experiments.deploy.export import render
from experiments.study.results import load_view

EFFECT = {"metric": "throughput_rps", "direction": "maximize", "change_pct": 21.5, "low_pct": 9.25,
          "high_pct": 33.0, "rounds": 3, "significant": True, "better": True}
NULL = {"metric": "throughput_rps", "direction": "maximize", "change_pct": 0.4, "low_pct": -3.0,
        "high_pct": 3.8, "rounds": 3, "significant": False, "better": False}


def _study(tmp_path: Path, record: dict | None) -> str:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="s", storage=url, directions=["maximize", "minimize"])
    study.set_user_attr("objectives", ["throughput_rps", "cost_usd_per_hour"])
    study.set_user_attr("knobs", ["vm.swappiness", "vm.dirty_ratio", "thp.enabled"])
    study.set_user_attr("sysctl_keys", {"vm.swappiness": "vm.swappiness", "vm.dirty_ratio": "vm.dirty_ratio"})
    rows = [((100.0, 0.02), 60, 20, "madvise", {"baseline": True}),  # the values found before the study
            ((130.0, 0.02), 90, 35, "madvise", {}),  # the choice: two changes
            ((129.0, 0.02), 60, 35, "madvise", {"justified_of": 1})]  # the reduced choice: one change left
    for (thr, cost), sw, dr, thp, attrs in rows:
        study.enqueue_trial({"vm.swappiness": sw, "vm.dirty_ratio": dr, "thp.enabled": thp}, user_attrs=attrs)
        t = study.ask()
        t.suggest_int("vm.swappiness", 0, 100)
        t.suggest_int("vm.dirty_ratio", 5, 60)
        t.suggest_categorical("thp.enabled", ["always", "madvise", "never"])
        study.tell(t, [thr, cost])
    if record is not None:
        study.set_user_attr("justified", record)
    return url


def _record(**over) -> dict:
    rec = {"of_trial": 1, "trial": 2, "rounds": 3, "note": "trial 1 with only the changes that showed an effect",
           "knobs": {"vm.dirty_ratio": {"value": 35, "baseline": 20, "kept": True, "reason": "kept: ...",
                                        "effects": [EFFECT]},
                     "vm.swappiness": {"value": 90, "baseline": 60, "kept": False, "reason": "put back: ...",
                                       "effects": [NULL]}}}
    rec.update(over)
    return rec


def test_the_export_ships_only_the_kept_change_with_its_evidence(tmp_path: Path) -> None:
    view = load_view(_study(tmp_path, _record()), "s")
    doc = json.loads(render(view, "json"))
    assert doc["trial"] == 2 and "1 of 2 changes kept by re-measurement" in doc["chosen_by"]
    assert doc["knobs"] == {"vm.dirty_ratio": 35}  # thp.enabled is unchanged, vm.swappiness put back
    assert doc["evidence"] == {"vm.dirty_ratio": "throughput_rps +21.5 % [+9.2, +33.0]"}
    assert doc["left_as_found"] == {"vm.swappiness": "throughput_rps +0.4 % [-3.0, +3.8]"}
    text = render(view, "sysctl")
    assert [line for line in text.splitlines() if not line.startswith("#")] == ["vm.dirty_ratio = 35"]
    assert "# measured effect of vm.dirty_ratio: throughput_rps +21.5 % [+9.2, +33.0]" in text
    assert "# left as found (no measured effect): vm.swappiness" in text
    (tmp_path / "c.json").write_text(json.dumps(doc))
    assert load_config(tmp_path / "c.json").values == {"vm.dirty_ratio": 35}  # apply/verify read it back


def test_without_a_record_or_with_another_rule_the_plain_choice_stands(tmp_path: Path) -> None:
    view = load_view(_study(tmp_path, None), "s")
    assert view.decide().trial.number == 1
    assert "evidence" not in json.loads(render(view, "json"))
    (tmp_path / "j").mkdir()
    justified = load_view(_study(tmp_path / "j", _record()), "s")
    assert justified.decide().trial.number == 2
    assert justified.decide(rule="best", target="throughput_rps").trial.number == 1  # asked for: no reduction


def test_a_record_pointing_at_a_missing_trial_is_ignored(tmp_path: Path) -> None:
    view = load_view(_study(tmp_path, _record(trial=99)), "s")
    assert view.decide().trial.number == 1


def test_a_tampered_record_carries_nothing_into_a_file(tmp_path: Path) -> None:
    bad = dict(EFFECT, metric="x\nvm.swappiness = 0", change_pct="1\n[main]")
    rec = _record()
    rec["knobs"]["vm.dirty_ratio"]["effects"] = [bad]
    text = render(load_view(_study(tmp_path, rec), "s"), "tuned")
    assert text.count("[main]") == 1  # the profile's own section, no injected one
    assert "= 0" not in text and "x\n" not in text
    assert "# measured effect of vm.dirty_ratio: not measured" in text


def test_an_export_where_every_change_was_put_back_cannot_be_applied_and_says_why(tmp_path: Path) -> None:
    doc = {"format": "novatune.config/v1", "study": "s", "knobs": {}, "left_as_found": {"vm.swappiness": "..."}}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="no change of the study's choice showed a measured effect"):
        load_config(tmp_path / "c.json")
