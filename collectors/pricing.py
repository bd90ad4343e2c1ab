"""Prices for the cost objective: per-resource unit prices and instance types.

``load_unit_prices`` gives USD per vCPU-hour and per GiB-hour; ``load_instance_types``
gives AWS EC2 instance types in us-east-1 with their on-demand price (a copy of
``shared/datasets/pricing/aws-ec2-us-east-1.csv``, prices as of 2026-07-20);
``load_discounts`` gives the spot / reserved / savings-plan discount figures of
``collectors/data/discounts.csv`` (advertised maxima, and figures derived from or observed in
AWS price records; see :mod:`optimizer.rightsizing.discounts` for which a plan may use).

Prices come from the packaged snapshot ``collectors/data/unit-prices.csv``
(a copy of ``shared/datasets/pricing/unit-prices.csv``: OpenCost default unit
prices, see ``collectors/data/README.md`` for source, date and licence). These
are list-price estimates for splitting cost between CPU and memory, not a quote.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from collectors.errors import CollectorError
from optimizer.rightsizing.discounts import Discount

__all__ = [
    "CATALOG_SOURCE", "Discount", "InstanceType", "UnitPrices", "load_discounts", "load_instance_types",
    "load_unit_prices",
]

#: where the packaged instance catalog comes from and the date its prices refer to
CATALOG_SOURCE = (
    "aws/karpenter-provider-aws pkg/providers/pricing/zz_generated.pricing_aws.go @ 6fc13b5236fd "
    "(us-east-1 Linux on-demand, generated 2026-07-20)"
)

_REQUIRED = ("profile", "resource", "pricing_model", "usd_per_unit_hour", "unit")
_INSTANCE_COLUMNS = ("instance_type", "family", "generation", "vcpu", "memory_gib", "ondemand_usd_per_hour", "arch")
_DISCOUNT_COLUMNS = (
    "provider", "purchase_option", "term", "payment_option", "scope", "discount_pct_min", "discount_pct_max",
    "discount_kind", "basis", "source",
)
_UNITS = {"cpu": "vCPU-hour", "memory": "GiB-hour"}


@dataclass(frozen=True)
class UnitPrices:
    """Unit prices of one profile and pricing model.

    To price a container by its limits, per hour:
    ``cpus * cpu_usd_per_vcpu_hour + memory_gib * memory_usd_per_gib_hour``.
    ``source`` says where the figures come from (repository, path, commit, date).
    """

    cpu_usd_per_vcpu_hour: float
    memory_usd_per_gib_hour: float
    source: str


def _read_rows(
    path: str | os.PathLike[str] | None, *, packaged: str = "unit-prices.csv", required: tuple[str, ...] = _REQUIRED
) -> tuple[list[dict[str, str]], str]:
    try:
        if path is None:
            text = resources.files("collectors").joinpath(f"data/{packaged}").read_text(encoding="utf-8")
            where = f"collectors/data/{packaged}"
        else:
            text = Path(path).read_text(encoding="utf-8")
            where = str(path)
    except OSError as err:
        raise CollectorError(f"cannot read prices from {path or packaged}: {err}") from err
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise CollectorError(f"price file {where} lacks columns {missing}")
    return list(reader), where


@dataclass(frozen=True)
class InstanceType:
    """One instance type of the catalog: its size and on-demand price (USD/h)."""

    name: str
    family: str
    generation: int
    vcpus: int
    memory_gib: float
    usd_per_hour: float
    arch: str


def load_instance_types(*, path: str | os.PathLike[str] | None = None) -> dict[str, InstanceType]:
    """Instance types by name, from the packaged AWS us-east-1 snapshot (or ``path``).

    Raises:
        CollectorError: the file cannot be read or a row is malformed.
    """
    rows, where = _read_rows(path, packaged="aws-ec2-us-east-1.csv", required=_INSTANCE_COLUMNS)
    out: dict[str, InstanceType] = {}
    for i, r in enumerate(rows, start=2):
        try:
            out[r["instance_type"]] = InstanceType(
                name=r["instance_type"], family=r["family"], generation=int(r["generation"]),
                vcpus=int(r["vcpu"]), memory_gib=float(r["memory_gib"]),
                usd_per_hour=float(r["ondemand_usd_per_hour"]), arch=r["arch"],
            )
        except ValueError as err:
            raise CollectorError(f"{where}:{i}: malformed row {r}: {err}") from err
    return out


def load_unit_prices(
    *,
    profile: str = "opencost-builtin-default",
    model: str = "on_demand",
    path: str | os.PathLike[str] | None = None,
) -> UnitPrices:
    """Load the CPU and memory unit prices of ``profile`` under pricing ``model``.

    Args:
        profile: a ``profile`` value of the CSV (e.g. ``opencost-builtin-default``,
            ``opencost-default-json``, ``opencost-azure-json``, ``opencost-oracle-json``).
        model: a ``pricing_model`` value (``on_demand``, ``spot``).
        path: another CSV with the same columns (default: the packaged copy).

    Raises:
        ValueError: unknown profile, or a model the profile has no CPU and
            memory price for (the message lists the allowed values).
        CollectorError: the file cannot be read or is malformed.
    """
    rows, where = _read_rows(path)
    profiles = sorted({r["profile"] for r in rows})
    if profile not in profiles:
        raise ValueError(f"unknown price profile {profile!r}; allowed: {', '.join(profiles)}")
    mine = [r for r in rows if r["profile"] == profile]
    found: dict[str, dict[str, str]] = {}
    for r in mine:
        if r["pricing_model"] == model and r["resource"] in _UNITS:
            found[r["resource"]] = r
    if set(found) != set(_UNITS):
        models = sorted(
            m for m in {r["pricing_model"] for r in mine}
            if {r["resource"] for r in mine if r["pricing_model"] == m} >= set(_UNITS)
        )
        raise ValueError(
            f"unknown pricing model {model!r} for profile {profile!r}; allowed: {', '.join(models) or '(none)'}"
        )
    prices: dict[str, float] = {}
    for resource, row in found.items():
        if row["unit"] != _UNITS[resource]:
            raise CollectorError(
                f"{where}: {profile}/{resource} unit is {row['unit']!r}, expected {_UNITS[resource]!r}")
        try:
            prices[resource] = float(row["usd_per_unit_hour"])
        except ValueError as err:
            raise CollectorError(
                f"{where}: {profile}/{resource} price {row['usd_per_unit_hour']!r} is not a number") from err
        if not prices[resource] >= 0:
            raise CollectorError(f"{where}: {profile}/{resource} price must be >= 0, got {prices[resource]}")
    cpu = found["cpu"]
    source = (
        f"{cpu.get('source_repo', '?')}:{cpu.get('source_path', '?')}@{cpu.get('source_commit', '?')[:12]}"
        f" (profile {profile}, {model}, values dated {cpu.get('values_dated', '?')}; file {where})"
    )
    return UnitPrices(cpu_usd_per_vcpu_hour=prices["cpu"], memory_usd_per_gib_hour=prices["memory"], source=source)


def _pct(value: str) -> float | None:
    return None if value.strip() == "" else float(value)


def load_discounts(*, path: str | os.PathLike[str] | None = None) -> list[Discount]:
    """The discount rows of the packaged ``discounts.csv`` (or ``path``), in file order.

    ``instance_type`` is set for rows derived or observed for one type (the first word of their
    ``scope``, e.g. ``m5.large``); the ``source`` of a row joins its ``source`` and
    ``source_version`` columns.

    Raises:
        CollectorError: the file cannot be read, lacks a column, or a row is malformed (a
            percentage that is not a number or outside [0, 100], a missing maximum, an unknown
            ``discount_kind``); the message names the file and line.
    """
    rows, where = _read_rows(path, packaged="discounts.csv", required=_DISCOUNT_COLUMNS)
    out: list[Discount] = []
    for i, r in enumerate(rows, start=2):
        try:
            hi = _pct(r["discount_pct_max"])
            if hi is None:
                raise ValueError("discount_pct_max is empty")
            first = r["scope"].split(" ")[0]
            typed = r["discount_kind"] != "up_to" and "." in first
            version = (r.get("source_version") or "").strip()
            out.append(Discount(
                provider=r["provider"], purchase_option=r["purchase_option"], term=r["term"],
                payment_option=r["payment_option"], scope=r["scope"], pct_min=_pct(r["discount_pct_min"]),
                pct_max=hi, kind=r["discount_kind"], basis=r["basis"],
                source=f"{r['source']} @ {version}" if version else r["source"],
                instance_type=first if typed else None,
            ))
        except (ValueError, TypeError, AttributeError) as err:
            raise CollectorError(f"{where}:{i}: malformed discount row: {err}") from err
    return out
