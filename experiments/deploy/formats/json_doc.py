"""``json``: the whole decision, ``format: novatune.config/v1`` (what ``novatune plan``, ``verify`` and
``apply`` read); with ``yaml``, the only format that carries every knob."""

from __future__ import annotations

import json
from typing import Any

from experiments.deploy.formats.common import ExportFormat
from experiments.study.results import StudyView

__all__ = ["FORMAT"]


def render(view: StudyView, doc: dict[str, Any], include: str | None) -> str:
    return json.dumps(doc, indent=2, sort_keys=False) + "\n"


FORMAT = ExportFormat("json", "novatune.json", None, render)
