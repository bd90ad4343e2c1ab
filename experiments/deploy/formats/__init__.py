"""One module per export format; :data:`FORMATS` is the registry, in the order the formats are listed.

A new format is a module here that defines ``FORMAT = ExportFormat(name, filename, install, render)``
(``render(view, document, include) -> str``; the header and the note of what it cannot carry come from
:mod:`.common`), added to :data:`FORMATS`. It then joins ``novatune study export --format``, the API's
``/export?format=``, the study's ``export/`` artifacts and the export tests that run over every format.
"""

from __future__ import annotations

from experiments.deploy.formats import json_doc, shell, sysctl, systemd, tuned, yaml_doc
from experiments.deploy.formats.common import ExportFormat

__all__ = ["FORMATS", "ExportFormat"]

FORMATS: dict[str, ExportFormat] = {f.name: f for f in (
    json_doc.FORMAT, yaml_doc.FORMAT, sysctl.FORMAT, tuned.FORMAT, systemd.FORMAT, shell.FORMAT,
)}
