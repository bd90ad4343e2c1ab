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


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Prometheus server for the session (it needs about 10 s of its own samples before a test
    can query it): scraping itself every second on 127.0.0.1; its base URL."""
    from tests.collectors.usage.conftest import run_prometheus

    yield from run_prometheus(tmp_path_factory.mktemp("prom"))
