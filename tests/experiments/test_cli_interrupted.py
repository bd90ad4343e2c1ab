"""Ctrl-C in any command: exit 130 and one line that is true of every command (not "the trial's knobs")."""

from __future__ import annotations

import pytest

import experiments.cli as cli
from experiments.study.outcomes import Interrupted


@pytest.mark.parametrize("error", [KeyboardInterrupt(), Interrupted("SIGTERM")])
def test_an_interrupted_command_exits_130_and_says_what_was_put_back(monkeypatch, capsys, error) -> None:
    def interrupted(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "app", interrupted)
    assert cli.main(["bench", "list"]) == 130
    text = " ".join(capsys.readouterr().err.split())
    assert "interrupted" in text and cli.PUT_BACK in text
    assert "trial" not in text
