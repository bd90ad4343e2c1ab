"""auto with the knowledge features: unchanged where knobs name nothing known, only existing configurations
proposed on a sparse grid, and a cost objective modelled as a known price part x an unknown part."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks._scoutlike import scoutlike_frame
from optimizer import bo
from optimizer.replay import Objective, ReplayTable, encoding
from optimizer.replay.encoding import encode, known_log_price
from optimizer.replay.search import _search

MULTICLOUD = Path("/work/shared/datasets/multicloud/multi-cloud-configuration.csv")
KNOBS = ["provider", "A_family", "A_vcpu", "B_family", "B_vcpu", "C_family", "C_type", "C_vcpu", "nodes"]
#: auto's picks on main before the features (seed 7, budget 10), per (objective, workload)
MAIN_PICKS = {
    ("target_cost", "buzz-logistic_regression"): [75, 41, 64, 24, 26, 73, 33, 35, 8, 71],
    ("target_runtime", "buzz-polynomial_features"): [75, 64, 65, 55, 62, 25, 20, 39, 22, 18],
}


def scout(obj: str = "cost_usd", **kw) -> ReplayTable:
    return ReplayTable.from_frame(scoutlike_frame(**kw), group="workload", knobs=["family", "size", "nodes"],
                                  objectives=[Objective(obj, "min")], feasible="status")


@pytest.mark.slow
@pytest.mark.skipif(not MULTICLOUD.is_file(), reason="the multicloud table is not here")
@pytest.mark.parametrize(("obj", "workload"), list(MAIN_PICKS))
def test_multicloud_gets_no_features_and_the_same_picks_as_before(obj, workload):
    df = pd.read_csv(MULTICLOUD, dtype=str, keep_default_na=False, na_values=[""])
    t = ReplayTable.from_frame(df, group="workload", knobs=KNOBS, objectives=[Objective(obj, "min")],
                               feasible="status")
    assert t.features is None
    g = t.groups[workload]
    X, _ = encode(t, g.configs)
    assert np.array_equal(X, t.encoder()(g.configs))
    assert known_log_price(t, g.configs, t.objectives[0]) is None  # a cost by name, but no price known
    assert _search(t, g, 7, "auto", 10, False) == MAIN_PICKS[(obj, workload)]


def test_instance_knobs_add_inputs_and_a_known_price_for_cost_only(monkeypatch):
    monkeypatch.setattr(encoding, "DERIVE_COST", "price")
    t = scout(workloads=1)
    g = t.groups["w0"]
    X, groups = encode(t, g.configs)
    base = t.encoder()(g.configs)
    assert X.shape[1] > base.shape[1] and np.array_equal(X[:, : base.shape[1]], base)
    assert groups is not None and len(groups) == X.shape[1]
    assert known_log_price(t, g.configs, t.objectives[0]) is not None
    assert known_log_price(scout("time_s", workloads=1), g.configs, Objective("time_s", "min")) is None


@pytest.mark.parametrize("sampler", ["auto", "tpe"])
def test_sparse_grid_every_proposal_is_an_existing_configuration_not_yet_evaluated(sampler):
    df = scoutlike_frame(workloads=1, max_vcpu=32)
    df = df.iloc[::2]  # a sparse grid: every other configuration is missing
    t = ReplayTable.from_frame(df, group="workload", knobs=["family", "size", "nodes"],
                               objectives=[Objective("time_s", "min")], feasible="status")
    g = t.groups["w0"]
    picks = _search(t, g, 3, sampler, len(g.configs), False)
    # budget = the group: each configuration that exists is evaluated exactly once, none is invented
    assert sorted(picks) == list(range(len(g.configs)))


def test_propose_derives_the_objective_from_its_known_part():
    # cost = price x time with the same time everywhere: once 4 points are seen, the model of the unknown
    # part (log time) is flat and the derived cost ranks the candidates by their known price exactly
    rng = np.random.default_rng(0)
    X = rng.random((30, 3))
    log_price = rng.normal(0.0, 1.0, 30)
    y = np.exp(log_price + 2.0)
    seen, cand = np.arange(4), np.arange(4, 30)
    k = bo.propose(X[seen], y[seen], np.ones(4, bool), X[cand], np.random.default_rng(1),
                   offset_seen=log_price[seen], offset_candidates=log_price[cand])
    assert cand[k] == cand[np.argmin(log_price[cand])]
    blind = bo.propose(X[seen], y[seen], np.ones(4, bool), X[cand], np.random.default_rng(1))
    assert cand[blind] != cand[k]  # without the known part the inputs carry no price: a different pick
