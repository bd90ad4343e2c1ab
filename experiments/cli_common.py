"""What every ``novatune`` command module shares: the data directory, JSON output, value formatting."""

from __future__ import annotations

import json
import sys
from typing import Any

from experiments.settings import Paths

__all__ = ["fmt", "paths", "print_json"]


def paths() -> Paths:
    """The data directory, resolved now (``$NOVATUNE_HOME`` or the default)."""
    return Paths.default()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def fmt(v: Any) -> str:
    """A value in a table cell: floats to 6 significant digits, None as '-'."""
    if v is None:
        return "-"
    return f"{v:.6g}" if isinstance(v, float) else str(v)
