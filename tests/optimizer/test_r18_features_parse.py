"""Knob values that name instance types, sizes or families become numeric figures (optimizer.replay.features)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from optimizer.replay.features import derive_features, family_spec, instance_spec, is_count_knob, size_units


@dataclass(frozen=True)
class Row:
    vcpus: int
    memory_gib: float
    usd_per_hour: float


# a slice of the AWS us-east-1 catalog (collectors/data/aws-ec2-us-east-1.csv): two c-class larges, no c4
CATALOG = {
    "c5.large": Row(2, 4, 0.085), "c5.xlarge": Row(4, 8, 0.17), "c6i.large": Row(2, 4, 0.085),
    "c7g.large": Row(2, 4, 0.0725), "m5.large": Row(2, 8, 0.096), "r5.large": Row(2, 16, 0.126),
}


def test_catalog_type_takes_the_catalog_figures():
    s = instance_spec("c5.xlarge", CATALOG)
    assert s is not None
    assert (s.cls, s.generation, s.vcpu, s.memory_gib, s.usd_per_hour, s.estimated) == ("c", 5, 4, 8, 0.17, False)


def test_type_not_in_catalog_is_estimated_from_its_name():
    s = instance_spec("c4.large", CATALOG)
    assert s is not None and s.estimated
    assert s.vcpu == 2 and s.memory_gib == 4  # compute class: 2 GiB per vCPU (the real c4.large has 3.75)
    assert s.usd_per_hour == pytest.approx(0.085)  # median of the catalog's c-class larges (0.0725, 0.085, 0.085)
    r = instance_spec("r4.2xlarge", CATALOG)  # no r-class 2xlarge in the catalog: per-vCPU + per-GiB unit price
    assert r is not None and r.vcpu == 8 and r.memory_gib == 64
    assert r.usd_per_hour == pytest.approx(8 * 0.035 + 64 * 0.0035)
    assert instance_spec("c4.large") is not None  # no catalog at all: still estimated


def test_sizes_families_and_other_names():
    assert size_units("2xlarge") == 8 and size_units("large") == 2 and size_units("xlarge") == 4
    assert size_units("A") is None and size_units("3") is None
    r4 = family_spec("r4", CATALOG)
    assert r4 is not None and r4.cls == "r" and r4.memory_gib == 8 and r4.generation == 4  # memory class
    assert family_spec("c5", CATALOG).memory_gib == 2  # type: ignore[union-attr]
    assert family_spec("A") is None and family_spec("0") is None
    az = instance_spec("Standard_D4s_v3")
    assert az is not None and az.vcpu == 4 and az.cls == "m" and az.estimated
    t = instance_spec("t3.micro")
    assert t is not None and t.vcpu == 2 and t.memory_gib == 1
    assert is_count_knob("nodes", ["4", "8"]) and not is_count_knob("nodes", ["4", "x"])
    assert not is_count_knob("threads_per_core", ["1", "2"])


def test_family_size_nodes_give_cluster_figures():
    configs = [("c5", "xlarge", "4"), ("c4", "large", "8"), ("r5", "large", "2")]
    f = derive_features(["family", "size", "nodes"], configs, CATALOG)
    assert f is not None
    assert f.roles == {"family": "family", "size": "size", "nodes": "count"}
    col = {n: f.values[:, i] for i, n in enumerate(f.names)}
    assert col["total_vcpu"].tolist() == [16, 16, 4]
    assert f.price_total == pytest.approx([0.68, 8 * 0.085, 2 * 0.126])
    assert f.estimated.tolist() == [False, True, False]
    X = f.scaled()
    assert X.shape[0] == 3 and X.min() >= 0 and X.max() <= 1


def test_one_instance_knob_is_the_same_as_family_plus_size():
    a = derive_features(["family", "size", "nodes"], [("m5", "large", "2"), ("c4", "2xlarge", "3")], CATALOG)
    b = derive_features(["type", "workers"], [("m5.large", "2"), ("c4.2xlarge", "3")], CATALOG)
    assert a is not None and b is not None
    assert np.array_equal(a.price_total, b.price_total) and a.names == b.names


def test_anonymised_knobs_get_no_features():
    configs = [("A", "0", "1", "2"), ("B", "", "", "3"), ("C", "", "", "5")]
    assert derive_features(["provider", "A_family", "A_vcpu", "nodes"], configs, CATALOG) is None
