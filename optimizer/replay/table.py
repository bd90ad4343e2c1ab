"""The replay's table: measured configurations per group, validated and aggregated.

Each group of the table (e.g. a workload) is a finite grid of configurations
whose objectives were measured; a blank knob cell means the knob does not apply
to that configuration.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from optimizer.replay.features import CatalogEntry, ConfigFeatures, derive_features

__all__ = [
    "NA",
    "NA_TOKEN",
    "Group",
    "Objective",
    "ReplayError",
    "ReplayTable",
    "parse_feasible",
    "parse_objective",
]

NA = ""  # a blank cell: the knob does not apply to this configuration
NA_TOKEN = "<n/a>"  # how "not applicable" is shown to an Optuna sampler
TRUE_WORDS = {"true", "1", "yes", "y", "t", "ok", "1.0"}
FALSE_WORDS = {"false", "0", "no", "n", "f", "0.0"}

Config = tuple[str, ...]  # one configuration: a knob cell per knob ('' = not applicable)


class ReplayError(ValueError):
    """Bad replay input: the message names what is wrong and what is allowed."""


@dataclass(frozen=True)
class Objective:
    """An objective column and its direction (``"min"`` or ``"max"``)."""

    name: str
    direction: str  # "min" | "max"

    @property
    def sign(self) -> float:
        """Multiply by this to get a value to minimise."""
        return 1.0 if self.direction == "min" else -1.0


def parse_objective(text: str) -> Objective:
    """``COLUMN:min`` or ``COLUMN:max`` as an :class:`Objective`.

    Raises:
        ReplayError: anything else.
    """
    name, sep, direction = text.rpartition(":")
    if not sep or not name or direction not in ("min", "max"):
        raise ReplayError(f"--objective {text!r}: expected COLUMN:min or COLUMN:max")
    return Objective(name, direction)


def parse_feasible(values: pd.Series, column: str) -> np.ndarray:
    """Feasibility from a boolean-ish column.

    true/false, 1/0, yes/no (any case) are read as such; the literal ``ok`` is
    true; any other non-empty text (e.g. an error message) is false.

    Raises:
        ReplayError: a blank cell.
    """
    def blank(i: int) -> ReplayError:
        return ReplayError(
            f"--feasible {column}: row {i} is blank; expected true/false, 1/0, yes/no, ok or an error text"
        )

    out = np.zeros(len(values), dtype=bool)
    for i, v in enumerate(values.tolist()):
        if isinstance(v, (bool, np.bool_)):
            out[i] = bool(v)
            continue
        if v is None or (isinstance(v, float) and math.isnan(v)):
            raise blank(i)
        s = str(v).strip().lower()
        if s in TRUE_WORDS:
            out[i] = True
        elif s in FALSE_WORDS or s:
            out[i] = False
        else:
            raise blank(i)
    return out


def cell(v: Any) -> str:
    """A knob cell as text, as it appears in the table ('' = not applicable). 3.0 -> '3'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return NA
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()


def number(s: str) -> float | None:
    """The number in ``s``, or None when it is not one."""
    try:
        return float(s)
    except ValueError:
        return None


def value_order(s: str) -> tuple[bool, float, str]:
    """Sort key of a knob value: numbers first, by value, then text."""
    x = number(s)
    return (x is None, x or 0, s)


# ------------------------------------------------------------------ the table
@dataclass
class Group:
    """One group's distinct configurations and their aggregated measurements."""

    name: str
    configs: list[Config]  # distinct configurations measured in this group
    values: np.ndarray  # (n_configs, n_objectives), median of the rows (see aggregate)
    feasible: np.ndarray  # (n_configs,) bool
    rows: np.ndarray  # (n_configs,) number of rows aggregated

    def optimum(self, j: int, obj: Objective) -> float | None:
        """The best feasible value of objective ``j``, None when nothing is feasible."""
        ok = self.values[self.feasible, j]
        if len(ok) == 0:
            return None
        return float(ok.min() if obj.direction == "min" else ok.max())


@dataclass
class ReplayTable:
    """The validated table: knobs, objectives, groups and every configuration seen."""

    knobs: list[str]
    objectives: list[Objective]
    groups: dict[str, Group]
    space: list[Config]  # every distinct configuration of the table, all groups
    numeric: dict[str, bool]  # knob -> all non-blank values are numbers
    group_column: str = "group"
    feasible_column: str | None = None
    #: numeric figures of ``space`` (rows in its order) when knobs name instance types, sizes or families
    #: (:mod:`optimizer.replay.features`); None otherwise
    features: ConfigFeatures | None = None

    @classmethod
    def from_frame(
        cls,
        df: pd.DataFrame,
        *,
        group: str,
        knobs: list[str],
        objectives: list[Objective],
        feasible: str | None = None,
        catalog: Mapping[str, CatalogEntry] | None = None,
    ) -> ReplayTable:
        """Validate and aggregate.

        Repeated rows of one (group, configuration) are aggregated: the
        configuration is feasible when at least half of its rows are feasible
        (a tie counts as feasible: it ran at least as often as it failed); its
        objective values are the median of its feasible rows (of all rows when
        none is feasible).

        ``catalog`` (instance type -> vCPU, GiB, $/h; e.g. ``collectors.pricing.load_instance_types()``)
        feeds :attr:`features`; without it the figures are estimated from the names.

        Raises:
            ReplayError: a missing column, a column in two roles, no knob or objective,
                more than two objectives, an empty table, a non-numeric objective, a
                blank objective on a feasible row, a blank feasibility cell.
        """
        _check_columns(df, group, knobs, objectives, feasible)
        vals = _objective_values(df, objectives)
        feas = parse_feasible(df[feasible], feasible) if feasible else np.ones(len(df), dtype=bool)
        _check_blank_objectives(vals, feas, objectives)
        keys = [tuple(cell(v) for v in row) for row in df[knobs].itertuples(index=False, name=None)]
        gcol = [str(cell(g)) for g in df[group].tolist()]
        numeric = {}
        for j, k in enumerate(knobs):
            seen = {key[j] for key in keys if key[j] != NA}
            numeric[k] = bool(seen) and all(number(s) is not None for s in seen)
        Y = np.column_stack([vals[o.name] for o in objectives])
        groups = _aggregate(gcol, keys, Y, feas)
        space = sorted({k for g in groups.values() for k in g.configs}, key=lambda t: tuple(value_order(s) for s in t))
        feats = derive_features(knobs, space, catalog)
        return cls(knobs, objectives, groups, space, numeric, group, feasible, feats)

    # -- encoding for the surrogate: one-hot categoricals (incl. n/a), numeric scaled + n/a flag
    def _encoding_columns(self) -> list[tuple[int, str, Any]]:
        """The surrogate's feature columns: (knob index, ``num``/``na``/``cat``, scale or value)."""
        cols: list[tuple[int, str, Any]] = []
        for j, k in enumerate(self.knobs):
            vals = sorted({c[j] for c in self.space})
            if self.numeric[k]:
                nums = [float(v) for v in vals if v != NA]
                cols.append((j, "num", (min(nums), max(nums))))
                if NA in vals:
                    cols.append((j, "na", None))
            else:
                for v in vals:
                    cols.append((j, "cat", v))
        return cols

    def encoding_groups(self) -> np.ndarray:
        """Per column of :meth:`encoder`'s features: 0 for a numeric column, 1 for the others
        (categorical and n/a flags), for one length scale per kind."""
        return np.array([0 if kind == "num" else 1 for _, kind, _ in self._encoding_columns()])

    def encoder(self, onehot: float = 1.0, na: float = 1.0, num: float = 1.0) -> Callable[[list[Config]], np.ndarray]:
        """Feature map for the surrogate; each argument weighs one kind of column."""
        cols = self._encoding_columns()

        def encode(configs: list[Config]) -> np.ndarray:
            X = np.zeros((len(configs), len(cols)))
            for r, c in enumerate(configs):
                for i, (j, kind, arg) in enumerate(cols):
                    v = c[j]
                    if kind == "num":
                        if v != NA:
                            lo, hi = arg
                            X[r, i] = 0.0 if hi == lo else num * (float(v) - lo) / (hi - lo)
                        else:
                            X[r, i] = 0.0
                    elif kind == "na":
                        X[r, i] = na if v == NA else 0.0
                    else:
                        X[r, i] = onehot if v == arg else 0.0
            return X

        return encode


def _check_columns(
    df: pd.DataFrame, group: str, knobs: list[str], objectives: list[Objective], feasible: str | None
) -> None:
    """Every named column exists and has one role; one or two objectives; rows present.

    Raises:
        ReplayError: the first thing wrong, naming the option.
    """
    cols = list(df.columns)
    need = [("--group", group)] + [("--knobs", k) for k in knobs] + [("--objective", o.name) for o in objectives]
    if feasible:
        need.append(("--feasible", feasible))
    for opt, c in need:
        if c not in cols:
            shown = ", ".join(str(x) for x in cols if not str(x).startswith("Unnamed"))
            raise ReplayError(f"{opt} {c!r}: no such column; the table has: {shown}")
    if not knobs:
        raise ReplayError("--knobs: give at least one knob column")
    if len(set(knobs)) != len(knobs):
        raise ReplayError("--knobs: a column is listed twice")
    if not objectives:
        raise ReplayError("give at least one --objective COLUMN:min|max")
    if len(objectives) > 2:
        raise ReplayError("at most two --objective (one, or two for a Pareto front)")
    if len({o.name for o in objectives}) != len(objectives):
        raise ReplayError("--objective: a column is listed twice")
    overlap = ({group} | ({feasible} if feasible else set())) & (set(knobs) | {o.name for o in objectives})
    if overlap or group in knobs:
        raise ReplayError(f"column(s) {sorted(overlap)} used in two roles (group, knob, objective, feasible)")
    if len(df) == 0:
        raise ReplayError("the table has no rows")


def _objective_values(df: pd.DataFrame, objectives: list[Objective]) -> dict[str, np.ndarray]:
    """Each objective column as floats (NaN for a blank cell).

    Raises:
        ReplayError: a non-blank cell that is not a number.
    """
    vals = {}
    for o in objectives:
        v = pd.to_numeric(df[o.name], errors="coerce")
        bad = v.isna() & df[o.name].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise ReplayError(
                f"--objective {o.name}: not numeric (row {i}: {df[o.name].iloc[i]!r}); objectives must be numbers"
            )
        vals[o.name] = v.to_numpy(dtype=float)
    return vals


def _check_blank_objectives(vals: dict[str, np.ndarray], feas: np.ndarray, objectives: list[Objective]) -> None:
    """A blank objective can only be an infeasible row.

    Raises:
        ReplayError: the first feasible row with a blank objective.
    """
    for o in objectives:
        blank = np.isnan(vals[o.name]) & feas
        if blank.any():
            i = int(np.flatnonzero(blank)[0])
            raise ReplayError(f"--objective {o.name}: row {i} is blank but feasible; objectives must be numbers")


def _aggregate(gcol: list[str], keys: list[Config], Y: np.ndarray, feas: np.ndarray) -> dict[str, Group]:
    """The groups, by name: rows of one (group, configuration) merged (see ``ReplayTable.from_frame``)."""
    groups: dict[str, Group] = {}
    frame = pd.DataFrame({"g": gcol, "k": keys, "i": np.arange(len(gcol))})
    for gname, sub in frame.groupby("g", sort=True):
        idx_by_key: dict[Config, list[int]] = {}
        for key, i in zip(sub["k"], sub["i"]):
            idx_by_key.setdefault(key, []).append(int(i))
        configs = list(idx_by_key)
        values = np.zeros((len(configs), Y.shape[1]))
        feasible_c = np.zeros(len(configs), dtype=bool)
        rows = np.zeros(len(configs), dtype=int)
        for c, key in enumerate(configs):
            ii = np.array(idx_by_key[key])
            f = feas[ii]
            feasible_c[c] = f.sum() * 2 >= len(f)
            use = ii[f] if f.any() else ii
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                values[c] = np.nanmedian(Y[use], axis=0)
            rows[c] = len(ii)
        groups[str(gname)] = Group(str(gname), configs, values, feasible_c, rows)
    return groups
