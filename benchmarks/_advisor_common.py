"""What the advisor benchmarks share: a private journal, apply/roll back through it, bounded commands, and the
before/after summary (medians with bootstrap intervals, from :func:`optimizer.decision.decide`)."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from actuators.catalog import Catalog
from experiments.deploy.apply import apply_config
from experiments.deploy.rollback import rollback
from experiments.settings import Paths
from optimizer.advice import Advice
from optimizer.decision import Guard, decide

__all__ = ["Journaled", "measured_advice", "private_paths", "run_bounded", "summary"]


@contextmanager
def private_paths() -> Iterator[Paths]:
    """A throw-away data directory (its own journal), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="novatune-advisor-bench-") as home:
        yield Paths(Path(home)).ensure()


class Journaled:
    """Applies configurations through novatune's journal and rolls every one back (newest first) on
    :meth:`close`, so nothing stays changed whatever happens in between."""

    def __init__(self, paths: Paths, catalog: Catalog) -> None:
        self.paths, self.catalog = paths, catalog
        self.active: list[str] = []

    def apply(self, values: Mapping[str, Any], source: str) -> str:
        app = apply_config(dict(values), paths=self.paths, source=source, catalog=self.catalog)
        if app.changed:
            self.active.append(app.id)
        return app.id

    def undo_last(self) -> None:
        rollback(self.active.pop(), paths=self.paths, catalog=self.catalog)

    def close(self) -> None:
        while self.active:
            self.undo_last()


def run_bounded(argv: Sequence[str], *, timeout_s: float) -> str:
    """stdout of ``argv`` (no shell), killed after ``timeout_s``.

    Raises:
        RuntimeError: it failed or timed out.
    """
    try:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"{argv[0]} timed out after {timeout_s} s") from err
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)}: exit {res.returncode}: {res.stderr.strip()[-300:]}")
    return res.stdout


def summary(metric: str, before: list[float], after: list[float], unit: str) -> tuple[float, str]:
    """The relative median change (positive = better) and lines saying it with its 95 % intervals."""
    d = decide({metric: before}, {metric: after}, [Guard(metric, "maximize")])
    v = d.metrics[0]
    text = (f"{metric} before: median {v.before:.4g} {unit} (95 % CI {v.before_ci[0]:.4g}..{v.before_ci[1]:.4g}, "
            f"n={v.n_before})\n{metric} after:  median {v.after:.4g} {unit} (95 % CI {v.after_ci[0]:.4g}.."
            f"{v.after_ci[1]:.4g}, n={v.n_after})\nchange: {v.change:+.1%} (95 % CI {v.change_ci[0]:+.1%}.."
            f"{v.change_ci[1]:+.1%}), Mann-Whitney p={v.p_value:.3g}, Cliff's delta={v.effect_size:+.2f}; "
            f"decision: {d.decision}")
    return v.change, text


def measured_advice(advice: Advice, change: float) -> Advice:
    """The advice with the effect measured here as its expected impact."""
    return replace(advice, expected_impact=round(change, 4), measured=True)
