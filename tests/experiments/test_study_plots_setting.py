"""The ``study_plots`` setting: a study draws its end plots unless the operator turned them off."""

from __future__ import annotations

from typing import Any, cast

import pytest

from experiments.settings import Paths, Settings
from experiments.study.runner import StudyRunner


def _runner(tmp_path, **kw: Any) -> StudyRunner:
    return StudyRunner(cast(Any, object()), paths=Paths(tmp_path / "home"), name="s", **kw)


def test_on_by_default(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOVATUNE_STUDY_PLOTS", raising=False)
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    assert Settings().study_plots is True
    assert _runner(tmp_path).plots is True


@pytest.mark.parametrize(("text", "expected"), [("false", False), ("0", False), ("true", True)])
def test_the_setting_decides_when_the_caller_does_not(tmp_path, monkeypatch, text: str, expected: bool) -> None:
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NOVATUNE_STUDY_PLOTS", text)
    assert _runner(tmp_path).plots is expected
    assert _runner(tmp_path, plots=not expected).plots is (not expected)  # the caller's word wins


def test_a_bad_value_is_refused_with_what_is_allowed(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NOVATUNE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NOVATUNE_STUDY_PLOTS", "sometimes")
    with pytest.raises(Exception, match="study_plots"):
        Settings()
