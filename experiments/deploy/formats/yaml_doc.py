"""``yaml``: the JSON document as YAML, after the header comment."""

from __future__ import annotations

from typing import Any

import yaml

from experiments.deploy.formats.common import ExportFormat, header
from experiments.study.results import StudyView

__all__ = ["FORMAT"]

INSTALL = "novatune plan novatune.yaml; novatune verify novatune.yaml"


def render(view: StudyView, doc: dict[str, Any], include: str | None) -> str:
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
    return "\n".join(header("yaml", INSTALL, doc)) + "\n" + text


FORMAT = ExportFormat("yaml", "novatune.yaml", INSTALL, render)
