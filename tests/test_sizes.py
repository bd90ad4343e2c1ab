"""The house stays readable: no module over 600 lines, no function over 80 (outside tests/).

Long modules and functions are where a newcomer gets lost and where two jobs hide in one place; the
limits are issue 12's. A failure names every offender with its size.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("optimizer", "collectors", "actuators", "experiments", "benchmarks")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80


def _sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py"))


def test_no_module_is_over_600_lines() -> None:
    offenders = {}
    for path in _sources():
        n = len(path.read_text().splitlines())
        if n > MAX_MODULE_LINES:
            offenders[str(path.relative_to(REPO))] = n
    assert offenders == {}, f"modules over {MAX_MODULE_LINES} lines: {offenders}"


def test_no_function_is_over_80_lines() -> None:
    offenders = {}
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    offenders[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = n
    assert offenders == {}, f"functions over {MAX_FUNCTION_LINES} lines: {offenders}"


def test_the_size_check_sees_every_package() -> None:
    """A check that reads no file would pass for the wrong reason."""
    seen = {p.relative_to(REPO).parts[0] for p in _sources()}
    assert seen == set(PACKAGES)
