"""A stand-in for the validated apply behind the service's background runner: the request is checked by a double
that records what it was asked, and the run waits for the service's shutdown, then reports the stop (what the
engine does: restore, ``rolled_back``). For API tests that must not measure a workload."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest


def stub_background_validation(monkeypatch: pytest.MonkeyPatch, *, knob: str, old: Any, new: Any,
                               seen: dict[str, Any]) -> None:
    """Patch the runner's check and the engine; ``seen`` gets the request's ``values``, ``source`` and spec name."""
    from experiments.deploy.applications import AppliedKnob
    from experiments.validate import background, engine
    from experiments.validate.checks import Checked
    from experiments.validate.store import load_report, save_report

    def fake_check(req: Any, *, paths: Any, spec: Any) -> Checked:
        seen["values"], seen["source"], seen["spec"] = req.values, req.source, spec.name
        return Checked(plan=None, rows=[AppliedKnob(knob=knob, old=old, new=new, changes=True)],  # type: ignore[arg-type]
                       writes={}, guards=[], initial_pairs=3, max_pairs=9, window_len_s=5.0,
                       vetted=SimpleNamespace(plan={}, rows=[]))  # type: ignore[arg-type]

    def fake_run(req: Any, *, paths: Any, stop: Any, checked: Any, validation_id: str) -> Any:
        assert stop.wait(30)  # until the service shuts down
        r = load_report(paths, validation_id)
        r.decision, r.reason = "rolled_back", "stopped: the change was undone before a decision"
        save_report(paths, r)
        return r

    monkeypatch.setattr(background, "check_request", fake_check)
    monkeypatch.setattr(engine, "validated_apply", fake_run)
