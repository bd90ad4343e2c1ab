"""Replay benchmark: aggregation, budget accounting, n/a knobs, trace vs summary, determinism, transfer."""

import numpy as np
import pandas as pd
import pytest

from optimizer import replay as rp
from optimizer.replay import Objective, ReplayError, ReplayTable, run_replay, within

ROWS = [
    # bench, engine, threads, cache, latency, throughput, valid
    ("w1", "rocks", 1, "small", 10, 100, "yes"),
    ("w1", "rocks", 2, "small", 8, 150, "yes"),
    ("w1", "rocks", 4, "big", 5, 300, "ok"),
    ("w1", "lmdb", 1, None, 7, 120, "disk full"),
    ("w1", "lmdb", 2, None, 6, 140, "yes"),
    ("w1", "lmdb", 2, None, 6.5, 160, "1"),
    ("w1", "lmdb", 2, None, 9, 999, "no"),
    ("w2", "rocks", 1, "small", 11, 90, "true"),
    ("w2", "rocks", 2, "small", 9, 130, "yes"),
    ("w2", "rocks", 4, "big", 6, 280, "yes"),
    ("w2", "lmdb", 1, None, 8, 110, "yes"),
    ("w2", "lmdb", 2, None, 7, 150, "true"),
]


def frame():
    return pd.DataFrame(ROWS, columns=["bench", "engine", "threads", "cache", "latency_ms", "throughput", "valid"])


THROUGHPUT = Objective("throughput", "max")


def table(objs=(THROUGHPUT,), df=None):
    return ReplayTable.from_frame(
        frame() if df is None else df, group="bench", knobs=["engine", "threads", "cache"], objectives=list(objs),
        feasible="valid",
    )


def test_repeats_aggregate_by_median_and_majority_feasibility():
    g = table().groups["w1"]
    i = g.configs.index(("lmdb", "2", ""))
    assert g.rows[i] == 3
    assert g.feasible[i]  # 2 of 3 rows feasible
    assert g.values[i, 0] == 150  # median of the feasible rows 140, 160 (the failed 999 ignored)
    assert not g.feasible[g.configs.index(("lmdb", "1", ""))]  # "disk full" -> infeasible


def test_feasible_words():
    v = rp.parse_feasible(pd.Series(["ok", "OK", "true", "1", "yes", "no", "0", "false", "Error: boom"]), "c")
    assert v.tolist() == [True, True, True, True, True, False, False, False, False]


def test_blank_means_not_applicable():
    t = table()
    assert ("lmdb", "2", "") in t.space  # a blank cell is its own "n/a" value
    ks = rp.KnobSpace(t)
    import optuna

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        tr = study.ask()
        conf = ks.suggest(tr)
        if conf[0] == "lmdb":
            assert "cache" not in tr.params and conf[2] == ""
        else:
            assert "cache" in tr.params
        study.tell(tr, 0.0)


def test_infeasible_rows_cost_budget():
    df = frame()
    df["valid"] = "no"
    df.loc[df["throughput"] == 100, "valid"] = "yes"
    res = run_replay(table(df=df), budget=3, seeds=2, sampler="auto")
    rows = [r for r in res.trace if r["group"] == "w1" and r["run"] == "sampler"]
    assert len(rows) == 6  # 2 seeds x 3 evaluations, infeasible ones included
    assert sum(not r["feasible"] for r in rows) >= 4
    assert res.summary["excluded"] == ["w2"]
    assert "excluded" in res.summary["groups"]["w2"]


def _recompute(res, t, obj="throughput"):
    o = next(o for o in t.objectives if o.name == obj)
    ps = []
    for gname, g in t.groups.items():
        opt = g.optimum(0, o)
        hits = []
        for s in range(res.seeds):
            vals = [r[obj] for r in res.trace
                    if r["group"] == gname and r["seed"] == s and r["run"] == "sampler" and r["feasible"]]
            hits.append(bool(vals) and within(max(vals) if o.direction == "max" else min(vals), opt, o.direction))
        ps.append(np.mean(hits))
    return float(np.mean(ps))


@pytest.mark.parametrize("sampler", ["auto", "tpe", "random"])
def test_trace_recomputes_summary_and_is_deterministic(sampler):
    t = table()
    a = run_replay(t, budget=2, seeds=3, sampler=sampler)
    b = run_replay(t, budget=2, seeds=3, sampler=sampler)
    assert a.trace == b.trace
    assert _recompute(a, t) == pytest.approx(a.summary["overall"]["throughput"]["p_within_10pct"])
    steps = {(r["run"], r["group"], r["seed"]): [] for r in a.trace}
    for r in a.trace:
        steps[(r["run"], r["group"], r["seed"])].append(r["step"])
    assert all(v == [1, 2] for v in steps.values())


def test_distinct_configurations_per_search():
    t = table()
    res = run_replay(t, budget=10, seeds=2, sampler="tpe")
    for key in {(r["run"], r["group"], r["seed"]) for r in res.trace}:
        confs = [(r["engine"], r["threads"], r["cache"]) for r in res.trace if (r["run"], r["group"], r["seed"]) == key]
        assert len(confs) == len(set(confs)) == len(t.groups[key[1]].configs)  # budget capped at the group size


def test_transfer_never_uses_the_tuned_group():
    t = table()
    df = frame()
    df.loc[df["bench"] == "w1", "throughput"] = df.loc[df["bench"] == "w1", "throughput"][::-1].to_numpy()
    poisoned = table(df=df)
    assert rp.transfer_prior(t, "w1", None) == rp.transfer_prior(poisoned, "w1", None)
    # the first two proposals come from the prior only; they do not change
    for s in range(3):
        a = rp.AutoProposer(t, t.groups["w1"], s, transfer=True)
        b = rp.AutoProposer(poisoned, poisoned.groups["w1"], s, transfer=True)
        for _ in range(2):
            i, j = a.next(), b.next()
            assert i == j
            a.tell(i)
            b.tell(j)


def test_two_objectives_hypervolume():
    t = table(objs=(Objective("throughput", "max"), Objective("latency_ms", "min")))
    res = run_replay(t, budget=20, seeds=1, sampler="auto")
    assert res.summary["overall"]["hypervolume"]["ratio"] == pytest.approx(1.0)  # everything evaluated


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"group": "nope"}, "--group"),
        ({"knobs": ["engine", "nope"]}, "--knobs"),
        ({"feasible": "nope"}, "--feasible"),
    ],
)
def test_bad_columns(kw, word):
    args = {"group": "bench", "knobs": ["engine", "threads", "cache"], "objectives": [THROUGHPUT], "feasible": "valid"}
    args.update(kw)
    with pytest.raises(ReplayError, match=word):
        ReplayTable.from_frame(frame(), **args)


def test_non_numeric_objective_and_bad_sampler():
    with pytest.raises(ReplayError, match="not numeric"):
        ReplayTable.from_frame(
            frame(), group="bench", knobs=["threads"], objectives=[Objective("engine", "min")], feasible="valid"
        )
    with pytest.raises(ReplayError, match="allowed"):
        run_replay(table(), budget=2, seeds=1, sampler="foo")
    with pytest.raises(ReplayError, match="at least 1"):
        run_replay(table(), budget=0, seeds=1)
