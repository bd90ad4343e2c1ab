"""The whole suite: a study draws no end plots (the ``study_plots`` setting, about 4 s of CPU each) unless
its test is about the plots and asks for them (``plots_on``); the README walk runs without this, as a
user would."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _no_study_plots() -> Iterator[None]:
    old = os.environ.get("NOVATUNE_STUDY_PLOTS")
    os.environ["NOVATUNE_STUDY_PLOTS"] = "false"
    yield
    if old is None:
        os.environ.pop("NOVATUNE_STUDY_PLOTS", None)
    else:
        os.environ["NOVATUNE_STUDY_PLOTS"] = old


@pytest.fixture()
def plots_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test checks a study's plots: they are drawn (in-process runs and the processes it starts)."""
    monkeypatch.setenv("NOVATUNE_STUDY_PLOTS", "true")
