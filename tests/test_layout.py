"""The dependency rule of DESIGN.md, checked on the source: imports only point downwards."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("optimizer", "collectors", "actuators", "experiments")
FORBIDDEN = {
    "optimizer": {"collectors", "actuators", "experiments"},
    "collectors": {"actuators", "experiments"},
    "actuators": {"experiments"},  # actuators observe through collectors before they change
    "experiments": set(),
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_dependency_rule(package):
    files = sorted((REPO / package).rglob("*.py"))
    assert files, f"{package} has no modules"
    bad = {str(f.relative_to(REPO)): sorted(_imports(f) & FORBIDDEN[package]) for f in files}
    assert {f: b for f, b in bad.items() if b} == {}
