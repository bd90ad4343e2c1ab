"""Rendering of optimizer results (matplotlib, headless). Reads ParetoInfo, computes nothing."""

from __future__ import annotations

from pathlib import Path

from optimizer.pareto import ParetoInfo

__all__ = ["plot_convergence", "plot_pareto"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(
    info: ParetoInfo, names: list[str], path: Path, *, title: str, trial_numbers: list[int] | None = None
) -> Path:
    """Scatter of the first two objectives: feasible, infeasible, front, knee."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    vals = info.values
    x, y = (0, 1) if vals.shape[1] >= 2 else (0, 0)
    ok = info.feasible
    ax.scatter(vals[~ok, x], vals[~ok, y], marker="x", color="#c44", label="infeasible / SLA violated")
    ax.scatter(vals[ok, x], vals[ok, y], color="#89a", label="feasible")
    if info.front.size:
        order = info.front[vals[info.front, x].argsort()]
        ax.plot(vals[order, x], vals[order, y], "-o", color="#1f77b4", label="Pareto front")
    if info.knee is not None:
        ax.scatter([vals[info.knee, x]], [vals[info.knee, y]], s=220, facecolors="none", edgecolors="#e60",
                   linewidths=2, label=f"knee (trial {trial_numbers[info.knee] if trial_numbers else info.knee})")
    ax.set_xlabel(f"{names[x]} ({info.directions[x]})")
    ax.set_ylabel(f"{names[y]} ({info.directions[y]})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_convergence(info: ParetoInfo, path: Path, *, title: str) -> Path:
    """Hypervolume of the feasible trials after each trial."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(range(len(info.hv_history)), info.hv_history, "-o", color="#1f77b4")
    ax.set_xlabel("trial")
    ax.set_ylabel("hypervolume (feasible trials)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_importance(importance: dict[str, dict[str, float]], path: Path, *, title: str) -> Path:
    """Horizontal bars: each knob's importance for each objective (fANOVA, sums to 1 per objective)."""
    plt = _plt()
    knobs = sorted({k for d in importance.values() for k in d}, key=lambda k: -max(d.get(k, 0) for d in importance.values()))
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(knobs) + 1.5))
    height = 0.8 / max(1, len(importance))
    for j, (objective, d) in enumerate(importance.items()):
        ys = [i + j * height for i in range(len(knobs))]
        ax.barh(ys, [d.get(k, 0.0) for k in knobs], height=height, label=objective)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(knobs))], knobs)
    ax.invert_yaxis()
    ax.set_xlabel("importance (share of the objective's variance explained)")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
