"""One target's usage against its current and recommended size, as a PNG (matplotlib, headless).

Two panels sharing the time axis: CPU cores used and memory GiB used (the working set), each with the
provisioned capacity over time (where known) and the recommended size as a horizontal line, so a
reader sees at a glance how much of the current size the target ever used and how close the
recommendation sits to the peaks. Reads a :class:`~optimizer.rightsizing.model.UsageSeries` and a
:class:`~optimizer.rightsizing.model.Recommendation`; computes nothing of its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from experiments.study.plots import headless_pyplot
from optimizer.rightsizing.model import Recommendation, UsageSeries

__all__ = ["plot_usage"]


def plot_usage(usage: UsageSeries, rec: Recommendation, path: str | Path, *, train_until: float | None = None) -> Path:
    """Write ``path`` (PNG): CPU and memory use of ``usage`` against the current and recommended sizes.

    ``train_until`` (Unix seconds), when given, marks where the history the recommendation was made
    from ends (a replay scores the rest).

    Raises:
        ValueError: ``usage`` has no samples.
        OSError: ``path`` cannot be written.
    """
    if len(usage) == 0:
        raise ValueError(f"{usage.target}: no samples to plot")
    plt = headless_pyplot()
    when = [datetime.fromtimestamp(x, UTC) for x in usage.t]
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    panels = (
        (axes[0], usage.cpu_cores, usage.cpu_capacity, rec.cpu.target, "CPU (cores)"),
        (axes[1], usage.mem_gib, usage.mem_capacity, rec.memory.target, "memory (GiB)"),
    )
    for ax, used, cap, target, label in panels:
        ax.plot(when, used, lw=0.7, color="tab:blue", label="used")
        if cap is not None and np.isfinite(cap).any():
            ax.plot(when, cap, lw=1.2, color="tab:gray", ls="--", label="current size")
        ax.axhline(target, color="tab:green", lw=1.5, label=f"recommended ({target:.2f})")
        if train_until is not None:
            ax.axvline(datetime.fromtimestamp(train_until, UTC), color="tab:red", lw=0.8, ls=":",
                       label="history used | scored")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{usage.target}: {rec.finding} ({rec.profile}, confidence {rec.confidence:.2f}, "
                      f"risk {rec.risk_label})")
    axes[1].set_xlabel("time (UTC)")
    fig.autofmt_xdate()
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
