"""The whole suite: a study draws no end plots (the ``study_plots`` setting, about 4 s of CPU each) unless
its test is about the plots and asks for them (``plots_on``), and does not re-measure its choice to
justify each change (the ``study_justify`` setting: a few measurement windows per changed knob) unless its
test is about that (``justify_on``); the README walk runs without this, as a user would.

The suite's own Ctrl-C tests send SIGINT to the processes they start. A shell that starts a job in the
background without job control (``nohup ... &`` in a script) makes it ignore SIGINT, and an ignored signal
stays ignored across exec: those children would never see the Ctrl-C. So pytest takes Python's own
handler back, and what it starts gets SIGINT as from a terminal, however the suite was launched."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def _no_study_plots() -> Iterator[None]:
    names = ("NOVATUNE_STUDY_PLOTS", "NOVATUNE_STUDY_JUSTIFY")
    old = {n: os.environ.get(n) for n in names}
    os.environ.update(dict.fromkeys(names, "false"))
    yield
    for n, v in old.items():
        if v is None:
            os.environ.pop(n, None)
        else:
            os.environ[n] = v


@pytest.fixture()
def plots_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test checks a study's plots: they are drawn (in-process runs and the processes it starts)."""
    monkeypatch.setenv("NOVATUNE_STUDY_PLOTS", "true")


@pytest.fixture()
def justify_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """This test checks a study's justification of its choice: it runs (the ``study_justify`` setting)."""
    monkeypatch.setenv("NOVATUNE_STUDY_JUSTIFY", "true")
