"""Rendering of optimizer results, headless: PNG (matplotlib) and self-contained HTML (plotly).

Reads ParetoInfo, an Optuna study or an importance table; computes nothing of its own.
The HTML files embed plotly.js (about 4.7 MB each) so they open offline and inside
the MLflow UI's artifact viewer, which does not load scripts from relative paths.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from pathlib import Path
from typing import Any

from optimizer.pareto import ParetoInfo

__all__ = [
    "headless_pyplot",
    "plot_convergence",
    "plot_convergence_html",
    "plot_importance",
    "plot_importance_html",
    "plot_parallel_coordinates",
    "plot_pareto",
    "plot_pareto_html",
    "write_html",
]

log = logging.getLogger(__name__)


def headless_pyplot():
    """``matplotlib.pyplot`` on the headless Agg backend (every PNG novatune draws goes through it)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_pareto(
    info: ParetoInfo, names: list[str], path: Path, *, title: str, trial_numbers: list[int] | None = None
) -> Path:
    """Scatter of the first two objectives: feasible, infeasible, front, knee."""
    plt = headless_pyplot()
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
    plt = headless_pyplot()
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
    plt = headless_pyplot()
    knobs = sorted({k for d in importance.values() for k in d},
                   key=lambda k: -max(d.get(k, 0) for d in importance.values()))
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


# ------------------------------------------------------------ interactive (plotly)
def _slug(name: str) -> str:
    """A file-name-safe form of an objective or knob name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "objective"


def write_html(fig: Any, path: Path) -> Path:
    """Write a plotly figure as one self-contained HTML file (plotly.js embedded: works offline)."""
    fig.write_html(str(path), include_plotlyjs=True, full_html=True)
    return path


def plot_importance_html(importance: dict[str, dict[str, float]], path: Path, *, title: str) -> Path:
    """Interactive twin of :func:`plot_importance`: grouped horizontal bars, one colour per objective."""
    import plotly.graph_objects as go

    knobs = sorted({k for d in importance.values() for k in d},
                   key=lambda k: max(d.get(k, 0) for d in importance.values()))
    fig = go.Figure()
    for objective, d in importance.items():
        fig.add_trace(go.Bar(
            x=[d.get(k, 0.0) for k in knobs], y=knobs, orientation="h", name=objective,
            hovertemplate="%{y}: %{x:.3f}<extra>" + objective + "</extra>",
        ))
    fig.update_layout(
        title=title, barmode="group", height=max(320, 60 + 36 * len(knobs) * max(1, len(importance))),
        xaxis_title="importance (share of the objective's variance explained)", template="plotly_white",
    )
    return write_html(fig, path)


def plot_pareto_html(
    info: ParetoInfo, names: list[str], path: Path, *, title: str, trial_numbers: list[int],
    hover: list[str] | None = None,
) -> Path:
    """Interactive twin of :func:`plot_pareto`: every trial a point (hover: its number, objectives and
    ``hover`` text, e.g. its knobs), the feasible front as a line, the knee circled."""
    import plotly.graph_objects as go

    vals = info.values
    x, y = (0, 1) if vals.shape[1] >= 2 else (0, 0)
    hover = hover or [""] * len(vals)
    fig = go.Figure()

    def points(idx: Any, name: str, **style: Any) -> None:
        idx = list(idx)
        if not idx:
            return
        fig.add_trace(go.Scatter(
            x=vals[idx, x], y=vals[idx, y], name=name, text=[f"trial {trial_numbers[i]}<br>{hover[i]}" for i in idx],
            hovertemplate=f"%{{text}}<br>{names[x]}: %{{x:.4g}}<br>{names[y]}: %{{y:.4g}}<extra>{name}</extra>",
            **style))

    ok = info.feasible
    points([i for i in range(len(vals)) if not ok[i]], "infeasible / SLA violated", mode="markers",
           marker={"symbol": "x", "color": "#c44", "size": 9})
    points([i for i in range(len(vals)) if ok[i]], "feasible", mode="markers", marker={"color": "#89a", "size": 8})
    if info.front.size:
        points(info.front[vals[info.front, x].argsort()], "Pareto front", mode="lines+markers",
               line={"color": "#1f77b4"}, marker={"size": 9})
    if info.knee is not None:
        points([info.knee], f"knee (trial {trial_numbers[info.knee]})", mode="markers",
               marker={"size": 20, "color": "rgba(0,0,0,0)", "line": {"color": "#e60", "width": 2}})
    fig.update_layout(title=title, template="plotly_white", xaxis_title=f"{names[x]} ({info.directions[x]})",
                      yaxis_title=f"{names[y]} ({info.directions[y]})")
    return write_html(fig, path)


def plot_convergence_html(info: ParetoInfo, path: Path, *, title: str, trial_numbers: list[int]) -> Path:
    """Interactive twin of :func:`plot_convergence`: hypervolume of the feasible trials after each trial."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=trial_numbers, y=list(info.hv_history), mode="lines+markers",
                               hovertemplate="after trial %{x}: %{y:.4g}<extra></extra>"))
    fig.update_layout(title=title, template="plotly_white", xaxis_title="trial",
                      yaxis_title="hypervolume (feasible trials)")
    return write_html(fig, path)


def _applied_study(study: Any) -> Any:
    """An in-memory copy of ``study`` whose trials carry the knob values actually applied (the
    ``applied`` user attribute: the sampler's proposal after ordering repair), so that the plots
    show what ran. A trial whose applied values do not fit its distributions keeps its params."""
    import optuna

    copy = optuna.create_study(directions=study.directions)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        applied = t.user_attrs.get("applied") or {}
        params = {k: applied.get(k, v) for k, v in t.params.items()}
        try:
            copy.add_trial(optuna.trial.create_trial(
                params=params, distributions=t.distributions, values=t.values, user_attrs=t.user_attrs))
        except (ValueError, TypeError):
            copy.add_trial(optuna.trial.create_trial(
                params=t.params, distributions=t.distributions, values=t.values, user_attrs=t.user_attrs))
    return copy


def plot_parallel_coordinates(
    study: Any, objectives: list[str], outdir: Path, *, title: str
) -> tuple[list[Path], dict[str, str]]:
    """One parallel-coordinate plot per objective, as ``parallel_coordinate-<objective>.html``
    (plotly, interactive) and ``.png`` (matplotlib), from the study's complete trials.

    Returns the files written and, for each plot not made, the reason (too few complete trials,
    no tuned knobs, a plotting error). Never raises for a study that is merely small or odd.
    """
    import optuna

    plt = headless_pyplot()  # the Agg backend before Optuna's matplotlib module touches pyplot
    from optuna.visualization import plot_parallel_coordinate as pc_plotly
    from optuna.visualization.matplotlib import plot_parallel_coordinate as pc_mpl

    outdir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    skipped: dict[str, str] = {}
    done = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    knobs = sorted({k for t in done for k in t.params})
    if len(done) < 2 or not knobs:
        why = f"{len(done)} complete trial(s)" if len(done) < 2 else "no tuned knobs"
        for objective in objectives:
            skipped[f"parallel_coordinate-{_slug(objective)}"] = f"not plotted: {why}"
        return files, skipped
    view = _applied_study(study)
    for i, objective in enumerate(objectives):
        stem = f"parallel_coordinate-{_slug(objective)}"
        values = [t.values[i] for t in done if t.values is not None and len(t.values) > i]
        if not any(math.isfinite(v) for v in values):
            skipped[stem] = "not plotted: no finite value"
            continue

        def target(t: Any, i: int = i) -> float:
            return t.values[i]

        try:
            fig = pc_plotly(view, target=target, target_name=objective)
            fig.update_layout(title=f"{title}: {objective}")
            files.append(write_html(fig, outdir / f"{stem}.html"))
        except Exception as err:  # noqa: BLE001 - a plot must never stop the study report
            skipped[f"{stem}.html"] = f"{type(err).__name__}: {err}"
            log.warning("no %s.html: %s", stem, err)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's matplotlib backend is "experimental"
                ax = pc_mpl(view, target=target, target_name=objective)
            fig_m = ax.get_figure(root=True)
            assert fig_m is not None
            try:
                fig_m.set_size_inches(max(7.0, 1.6 * (len(knobs) + 1)), 5.0)
                ax.set_title(f"{title}: {objective}")
                fig_m.tight_layout()
                fig_m.savefig(outdir / f"{stem}.png", dpi=110)
                files.append(outdir / f"{stem}.png")
            finally:
                plt.close(fig_m)
        except Exception as err:  # noqa: BLE001 - a plot must never stop the study report
            skipped[f"{stem}.png"] = f"{type(err).__name__}: {err}"
            log.warning("no %s.png: %s", stem, err)
    return files, skipped
