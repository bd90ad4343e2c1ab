"""Problem families of the replay suite: deterministic, replayable, and as promised."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from optimizer.replay import ReplayTable, parse_objective
from optimizer.replay.families import OLD_FAMILIES, Family, InstanceFigures, families

REPO = Path(__file__).resolve().parents[2]


def _catalog() -> dict[str, InstanceFigures]:
    """A small catalog: c/m/r generations 5 and 6 at the sizes the families use (AWS list prices)."""
    per2 = {"c": 0.085, "m": 0.096, "r": 0.126}
    gib = {"c": 2, "m": 4, "r": 8}
    out = {}
    for cls in "cmr":
        for gen in ("5", "6i"):
            for size, n in {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16}.items():
                out[f"{cls}{gen}.{size}"] = InstanceFigures(n, gib[cls] * n, per2[cls] * n / 2)
    return out


FAMS = {f.name: f for f in families(_catalog())}


def _table(f: Family, obj: str, seed: int = 0) -> ReplayTable:
    return ReplayTable.from_frame(f.build(seed), group=f.group, knobs=f.knobs,
                                  objectives=[parse_objective(obj)], feasible=f.feasible)


def test_both_splits_hold_every_kind() -> None:
    for split in ("train", "held-out"):
        names = [n for n, f in FAMS.items() if f.split == split]
        assert any(n.startswith("cloud-itype") for n in names) and any(n.startswith("cloud-famsize") for n in names)
        assert any("numeric" in n for n in names) and any("categorical" in n for n in names)
        assert any(n.endswith("dense") for n in names) and any(n.endswith("sparse") for n in names)


@pytest.mark.parametrize("name", sorted(FAMS))
def test_deterministic(name: str) -> None:
    f = FAMS[name]
    a, b = f.build(3), f.build(3)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(f.build(4))
    for k in f.knobs:
        assert all(isinstance(v, str) for v in a[k])


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FAMS))
def test_replayable(name: str) -> None:
    f = FAMS[name]
    for obj in f.objectives:
        t = _table(f, obj)
        assert 5 <= len(t.groups) <= 18
        assert all(g.feasible.any() for g in t.groups.values())
    assert 3 <= len(f.knobs) <= 6 or f.kind == "cloud"


def test_sparse_families_miss_configurations_dense_do_not() -> None:
    for name, f in FAMS.items():
        df = f.build(0)
        space = len(df[f.knobs].drop_duplicates())
        sizes = df.groupby(f.group).size()
        assert not df.duplicated([f.group, *f.knobs]).any()
        if name.endswith("sparse"):
            assert sizes.max() < space and sizes.min() <= 0.7 * space, name
        else:
            assert sizes.min() == space, name


def test_infeasible_rows_where_promised() -> None:
    for name in ("fn-hartmann3-numeric-dense", "fn-levy-categorical-sparse", "cloud-itype-dense"):
        df = FAMS[name].build(0)
        assert 0.02 < (df["feasible"] != "true").mean() < 0.5, name
    assert (FAMS["fn-ackley-numeric-dense"].build(0)["feasible"] == "true").all()


def test_cloud_cost_is_price_times_nodes_times_runtime() -> None:
    cat = _catalog()
    df = FAMS["cloud-itype-sparse"].build(1)
    price = np.array([cat[t].usd_per_hour for t in df["instance_type"]])
    np.testing.assert_allclose(df["cost"], price * df["nodes"].astype(int) * df["runtime"] / 3600, rtol=1e-4)
    fs = FAMS["cloud-famsize-dense"].build(1)
    old = fs[fs["family"] == "c4"]
    assert len(old) and "c4.large" not in cat
    est = OLD_FAMILIES["c4"][1] * old["size"].map({"large": 1, "xlarge": 2, "2xlarge": 4})
    np.testing.assert_allclose(old["cost"], est * old["nodes"].astype(int) * old["runtime"] / 3600, rtol=1e-4)


def test_categorical_heavy_hides_the_order() -> None:
    f = FAMS["fn-hartmann6-categorical-dense"]
    df = f.build(0)
    hidden = 0
    for k in ("x0", "x1", "x2", "x3"):
        assert not pd.to_numeric(df[k], errors="coerce").notna().any()
        # the label order of the shuffled levels differs from alphabetical in some knob
        by_first_seen = list(dict.fromkeys(df[k]))
        hidden += by_first_seen != sorted(by_first_seen)
    assert hidden >= 1
    assert pd.to_numeric(df["x4"], errors="coerce").notna().all()


def test_fn_groups_are_related_instances() -> None:
    df = FAMS["fn-ackley-numeric-dense"].build(0)
    vals = [sub["value"].to_numpy() for _, sub in df.groupby("instance")]
    rho = np.corrcoef(np.argsort(np.argsort(vals[0])), np.argsort(np.argsort(vals[1])))[0, 1]
    assert rho > 0.3  # shifted copies of one function: ranks agree, not identical
    assert not np.allclose(vals[0], vals[1])


@pytest.mark.slow
def test_suite_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("replay_suite", REPO / "benchmarks" / "replay_suite.py")
    assert spec and spec.loader
    suite = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(suite)
    rc = suite.main(["--families", "fn-branin-mixed-dense", "--seeds", "2", "--budget", "3",
                     "--samplers", "auto,random"])
    out = capsys.readouterr().out
    assert rc == 0
    header = next(line for line in out.splitlines() if line.startswith("family"))
    for col in ("split", "objective", "sampler", "transfer", "p", "random", "regret", "target", "met"):
        assert col in header.split()
    rows = [line for line in out.splitlines() if line.startswith("fn-branin-mixed-dense")]
    assert [r.split()[3:5] for r in rows] == [["auto", "no"], ["auto", "yes"], ["random", "no"]]
    assert "split train:" in out and "reproduce: python benchmarks/replay_suite.py" in out
