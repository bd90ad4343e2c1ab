"""Discounts below the on-demand price, and which of them a plan may use. Plain data.

A :class:`Discount` is one row of ``collectors/data/discounts.csv`` (built by
``collectors.pricing.load_discounts``; this module only reads it). Its ``kind`` says what the
figure is:

* ``up_to`` -- an advertised maximum ("save up to 90 %"). Never used as a saving: the realised
  discount is lower and unknown.
* ``derived`` -- computed from a provider's price record (the AWS Reserved Instance rates of
  m5.large in the 2021 Price List: effective rate = hourly + upfront / term hours).
* ``observed`` -- measured against recorded prices (AWS spot prices of a handful of types).

The plan's purchase options (:func:`supported_options`) are the ones a ``derived`` or
``observed`` row supports: ``on_demand``, ``spot``, ``reserved_{1y,3y}_{no,partial,all}_upfront``
(standard RIs) and ``reserved_convertible_...``. Savings plans have only advertised maxima in the
data, so no ``savings_plan_*`` option is offered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["DISCOUNT_KINDS", "ON_DEMAND", "SPOT", "Discount", "OptionPrice", "option_discount", "supported_options"]

DISCOUNT_KINDS = ("up_to", "derived", "observed")
ON_DEMAND = "on_demand"
SPOT = "spot"
#: discounts.csv purchase_option -> the prefix of the plan's option names
_RESERVED = {"reserved_instance_standard": "reserved", "reserved_instance_convertible": "reserved_convertible"}
#: the months of a commitment's term, for the plan's notes
TERM_MONTHS = {"1y": 12, "3y": 36}


@dataclass(frozen=True)
class Discount:
    """One discount figure, in percent below the on-demand price.

    ``pct_min`` is None for an advertised maximum (``kind == "up_to"``); for ``derived`` rows
    ``pct_min == pct_max``; for ``observed`` rows they bound what was seen. ``instance_type`` is
    the type the figure was derived or observed for (None for a provider-wide figure).

    Raises:
        ValueError: an unknown ``kind``, a percentage outside [0, 100], or ``pct_min > pct_max``.
    """

    provider: str
    purchase_option: str
    term: str
    payment_option: str
    scope: str
    pct_min: float | None
    pct_max: float
    kind: str
    basis: str
    source: str
    instance_type: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in DISCOUNT_KINDS:
            raise ValueError(f"discount kind {self.kind!r} is not one of {list(DISCOUNT_KINDS)}")
        for name in ("pct_min", "pct_max"):
            v = getattr(self, name)
            if v is not None and not 0.0 <= v <= 100.0:
                raise ValueError(f"{name} must be a percentage in [0, 100], got {v}")
        if self.pct_min is not None and self.pct_min > self.pct_max:
            raise ValueError(f"pct_min {self.pct_min} > pct_max {self.pct_max}")

    @property
    def usable(self) -> bool:
        """True for a figure a plan may count on (``derived`` or ``observed``), False for a maximum."""
        return self.kind != "up_to" and self.pct_min is not None

    @property
    def option(self) -> str | None:
        """The plan's purchase option this row prices (None when the data support none)."""
        if self.purchase_option == SPOT and self.provider == "aws":
            return SPOT
        prefix = _RESERVED.get(self.purchase_option)
        if prefix is None or self.term not in TERM_MONTHS:
            return None
        payment = self.payment_option.lower().replace(" ", "_")
        return f"{prefix}_{self.term}_{payment}"


@dataclass(frozen=True)
class OptionPrice:
    """A purchase option's discount for one instance type, and where the figure comes from."""

    option: str
    pct: float
    basis: str
    term: str = "none"


def supported_options(discounts: Sequence[Discount]) -> tuple[str, ...]:
    """The purchase options the usable rows support: ``on_demand`` first, then ``spot``, then RIs."""
    found = sorted({d.option for d in discounts if d.usable and d.option is not None and d.provider == "aws"})
    spot = [SPOT] if SPOT in found else []
    return (ON_DEMAND, *spot, *(o for o in found if o != SPOT))


def option_discount(discounts: Sequence[Discount], option: str, instance_type: str) -> OptionPrice:
    """The discount of ``option`` for ``instance_type``, from usable (derived/observed) rows only.

    Reserved rates were derived for one type (m5.large); for another type the same percentage is
    assumed and the basis says so. Spot uses the low end of the range observed for the type; for a
    type without an observation, the lowest discount observed for any type, and the basis says so.

    Raises:
        ValueError: ``option`` is not one :func:`supported_options` lists for ``discounts``.
    """
    if option == ON_DEMAND:
        return OptionPrice(option, 0.0, "on-demand list price of the catalog")
    rows = [d for d in discounts if d.usable and d.option == option and d.provider == "aws"]
    if not rows:
        allowed = ", ".join(supported_options(discounts))
        raise ValueError(f"no derived or observed discount for purchase option {option!r}; allowed: {allowed}")
    own = [d for d in rows if d.instance_type == instance_type]
    if option == SPOT:
        if own:
            d = min(own, key=lambda r: r.pct_min or 0.0)
            lo = d.pct_min or 0.0
            seen = f"{lo:g}" if lo == d.pct_max else f"{lo:g}-{d.pct_max:g}"
            return OptionPrice(option, lo, f"spot observed {seen} % below on-demand for {instance_type} "
                                           f"({d.basis}; {d.source}); the low end is used")
        d = min(rows, key=lambda r: r.pct_min or 0.0)
        types = sorted({r.instance_type or r.scope for r in rows})
        return OptionPrice(option, d.pct_min or 0.0,
                           f"spot not observed for {instance_type}: the lowest discount observed among "
                           f"{len(types)} types ({d.instance_type}, {d.pct_min:g} %) is assumed")
    d = own[0] if own else rows[0]
    pct = d.pct_min or 0.0
    basis = f"{d.purchase_option} {d.term} {d.payment_option}: {pct:g} % derived for {d.scope} ({d.basis}; {d.source})"
    if d.instance_type != instance_type:
        basis += f"; the same percentage is assumed for {instance_type}"
    return OptionPrice(option, pct, basis, term=d.term)
