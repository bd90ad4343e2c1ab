"""The packaged discounts.csv and load_discounts (part B)."""

from __future__ import annotations

import csv
import fnmatch
import tomllib
from pathlib import Path

import pytest

from collectors.errors import CollectorError
from collectors.pricing import load_discounts, load_instance_types
from optimizer.instance import HOURS_PER_MONTH
from optimizer.rightsizing.discounts import option_discount, supported_options
from optimizer.rightsizing.model import Recommendation, ResourceRecommendation
from optimizer.rightsizing.offers import match_offers

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "collectors" / "data"
SHARED = Path("/work/shared/datasets/pricing/discounts.csv")


def test_packaged_copy_is_verbatim_documented_and_packaged() -> None:
    if SHARED.exists():
        assert (DATA / "discounts.csv").read_bytes() == SHARED.read_bytes()
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    assert "## discounts.csv" in readme and "load_discounts" in readme and "Licence" in readme
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["collectors"]
    assert any(fnmatch.fnmatch("data/discounts.csv", p) for p in patterns)


def test_load_discounts_rows_and_kinds() -> None:
    rows = load_discounts()
    with (DATA / "discounts.csv").open(encoding="utf-8") as f:
        raw = list(csv.DictReader(f))
    assert len(rows) == len(raw) == 36
    assert {r.kind for r in rows} == {"up_to", "derived", "observed"}
    first = rows[0]
    assert (first.provider, first.purchase_option, first.kind, first.pct_min, first.pct_max) == (
        "aws", "spot", "up_to", None, 90.0)
    assert not first.usable and first.instance_type is None
    ri = [r for r in rows if r.kind == "derived" and r.purchase_option.startswith("reserved_instance")]
    assert len(ri) == 12 and {r.instance_type for r in ri} == {"m5.large"}
    std_1y_none = next(r for r in ri if r.purchase_option == "reserved_instance_standard" and r.term == "1y"
                       and r.payment_option == "No Upfront")
    assert std_1y_none.pct_min == std_1y_none.pct_max == 37.5
    assert "1863d05c37e6376776205760472e6309b26d0b54" in std_1y_none.source
    spot = {r.instance_type: (r.pct_min, r.pct_max) for r in rows if r.kind == "observed" and r.provider == "aws"
            and r.purchase_option == "spot"}
    assert spot["m5.large"] == (54.5, 61.8) and spot["t3.medium"] == (70.0, 70.0)
    assert min(lo for lo, _ in spot.values()) == 44.6


def test_plan_figures_are_never_advertised_maxima() -> None:
    rows = load_discounts()
    opts = supported_options(rows)
    assert opts[:3] == ("on_demand", "spot", "reserved_1y_all_upfront")
    assert not any(o.startswith("savings_plan") for o in opts)  # only "up to" figures exist for them
    pcts = {o: option_discount(rows, o, "m5.large").pct for o in opts}
    assert pcts["reserved_1y_no_upfront"] == 37.5 and pcts["reserved_3y_all_upfront"] == 62.4
    assert pcts["reserved_convertible_3y_no_upfront"] == 49.0
    assert pcts["spot"] == 54.5
    assert option_discount(rows, "spot", "c6i.large").pct == 59.8
    assert option_discount(rows, "spot", "r7i.large").pct == 44.6  # not observed: the lowest observation
    assert max(pcts.values()) == 62.4  # not 72 or 90


def test_packaged_catalog_cheapest_fitting_type() -> None:
    types = load_instance_types()
    c = ResourceRecommendation("cpu", 2.4, 2.2, 2.6, 8.0, "over-provisioned",
                               observed={"p50": 1.0, "p99": 2.1, "max": 2.3})
    m = ResourceRecommendation("memory", 9.0, 9.0, 10.0, 32.0, "over-provisioned",
                               observed={"p50": 6.0, "p99": 8.0, "max": 8.2, "peak": 8.2})
    rec = Recommendation("svc", "balanced", c, m, "over-provisioned", 0.9, 0.0, 336.0)
    offers = match_offers(rec, types.values(), load_discounts(), current="m5.2xlarge")
    with (DATA / "aws-ec2-us-east-1.csv").open(encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if int(r["vcpu"]) >= 2.4 and float(r["memory_gib"]) >= 9
                and r["arch"] == "x86_64" and not r["family"].startswith("t")]
    best = min(rows, key=lambda r: (float(r["ondemand_usd_per_hour"]), int(r["vcpu"]), float(r["memory_gib"]),
                                    r["instance_type"]))
    assert offers[0].instance_type == best["instance_type"] == "m5a.xlarge"
    assert offers[0].usd_per_month == pytest.approx(float(best["ondemand_usd_per_hour"]) * HOURS_PER_MONTH)
    assert offers[0].savings_usd_per_month == pytest.approx((0.384 - 0.172) * HOURS_PER_MONTH)
    assert [o.usd_per_month for o in offers] == sorted(o.usd_per_month for o in offers)


@pytest.mark.parametrize(("body", "message"), [
    ("provider,purchase_option\naws,spot\n", r"lacks columns \['term'"),
    ("HEADER\naws,spot,none,n/a,EC2,,ninety,up_to,b,s,v,primary\n", r":2: malformed discount row.*ninety"),
    ("HEADER\naws,spot,none,n/a,EC2,,,up_to,b,s,v,primary\n", r":2: malformed discount row: discount_pct_max is empty"),
    ("HEADER\naws,spot,none,n/a,EC2,10,120,observed,b,s,v,primary\n", r"percentage in \[0, 100\], got 120"),
    ("HEADER\naws,spot,none,n/a,EC2,10,20,guessed,b,s,v,primary\n", r"discount kind 'guessed' is not one of"),
    ("HEADER\naws,spot,none,n/a,EC2,30,20,observed,b,s,v,primary\n", r"pct_min 30.0 > pct_max 20.0"),
])
def test_malformed_discount_files(tmp_path: Path, body: str, message: str) -> None:
    header = (DATA / "discounts.csv").read_text(encoding="utf-8").splitlines()[0]
    path = tmp_path / "discounts.csv"
    path.write_text(body.replace("HEADER", header), encoding="utf-8")
    with pytest.raises(CollectorError, match=message):
        load_discounts(path=path)


def test_missing_discount_file(tmp_path: Path) -> None:
    with pytest.raises(CollectorError, match="cannot read prices"):
        load_discounts(path=tmp_path / "nope.csv")
