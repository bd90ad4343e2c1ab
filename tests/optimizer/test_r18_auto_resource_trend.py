"""auto's trend model joins the GP only when the knobs size resources (encoding.has_resource_knobs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from optimizer import bo
from optimizer.replay import Objective, ReplayTable, proposers
from optimizer.replay.encoding import has_resource_knobs


def _table(knobs: dict[str, list[str]]) -> ReplayTable:
    n = len(next(iter(knobs.values())))
    rows = []
    for g in ("w1", "w2"):
        rows += [{"g": g, **{k: v[i] for k, v in knobs.items()}, "t": str(1.0 + i)} for i in range(n)]
    return ReplayTable.from_frame(pd.DataFrame(rows), group="g", knobs=list(knobs), objectives=[Objective("t", "min")])


def test_count_and_instance_knobs_are_resources_plain_numbers_are_not() -> None:
    assert has_resource_knobs(_table({"nodes": ["1", "2", "4", "8"], "x": ["0", "1", "0", "1"]}))
    assert has_resource_knobs(_table({"instance_type": ["c5.large", "m5.large", "c5.xlarge", "r5.large"]}))
    assert not has_resource_knobs(_table({"x0": ["-3", "0.5", "2", "7"], "x1": ["a", "b", "a", "b"]}))
    # a count-like name with non-integer values is not a count
    assert not has_resource_knobs(_table({"nodes": ["0.5", "1.5", "2.5", "3.5"]}))


def test_auto_passes_no_trend_for_plain_knobs_and_the_default_for_resource_knobs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _table({"x0": [str(v) for v in range(8)], "x1": ["1", "2"] * 4})
    sized = _table({"nodes": [str(2**v) for v in range(8)], "x1": ["1", "2"] * 4})
    seen: list[float | None] = []
    real = bo.propose

    def spy(*args, **kw):  # type: ignore[no-untyped-def]
        seen.append(kw.get("trend"))
        return real(*args, **kw)

    monkeypatch.setattr(bo, "propose", spy)
    for table, want in ((plain, 0.0), (sized, None)):
        seen.clear()
        p = proposers.AutoProposer(table, table.groups["w1"], seed=3)
        p.tell(p.next())
        assert seen == [want]
    monkeypatch.setattr(proposers, "TREND_RESOURCES_ONLY", False)
    seen.clear()
    p = proposers.AutoProposer(plain, plain.groups["w1"], seed=3)
    p.tell(p.next())
    assert seen == [None]


def test_propose_trend_zero_is_the_gp_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    X = np.random.default_rng(4).uniform(0.0, 1.0, size=(30, 2))
    y = 1.0 + 4.0 * X[:, 0] + np.sin(8.0 * X[:, 1]) ** 2
    seen = np.arange(7)
    args = (X[seen], y[seen], np.ones(7, dtype=bool), X[7:])
    off = bo.propose(*args, np.random.default_rng(5), trend=0.0)
    assert off != bo.propose(*args, np.random.default_rng(5))  # the default mixes the trend in: another pick
    monkeypatch.setattr(bo, "TREND_WEIGHT", 0.0)
    assert off == bo.propose(*args, np.random.default_rng(5))
