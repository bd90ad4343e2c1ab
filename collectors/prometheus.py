"""Prometheus exposition of host metrics (``prometheus-client``).

Usage::

    registry = build_registry(sampler=MetricsSampler())
    body = render(registry)   # bytes, text format 0.0.4

Host metrics (:class:`HostCollector`): every scrape calls ``sampler.sample()``
(the first scrape therefore carries gauges only, as ``MetricsSampler`` primes
its counters) and maps each dotted name to ``novatune_<name>``, converted to
Prometheus base units:

=========  ==========================  =========================================
unit       conversion                  name
=========  ==========================  =========================================
``%``      value / 100                 ``_pct`` -> ``_ratio``
``ms``     value / 1000                ``_ms`` -> ``_seconds``
``s/s``    as is                       ``_s_per_s`` -> ``_seconds_per_second``
``1/s``    as is                       ``_per_s`` -> ``_per_second``, ``_iops`` -> ``_ops_per_second``
``bytes``  as is                       ends in ``_bytes``
=========  ==========================  =========================================

Counter-derived metrics are rates over the last interval, so they are exposed
as GAUGES (never counters). Per-instance parts of a name become labels:
``cpu.<n>.*`` -> ``{cpu="<n>"}`` (the all-CPU figure is ``cpu="all"``: filter it
out before summing), ``disk.<dev>.*`` -> ``{device}``, ``net.<if>.*`` ->
``{interface}``, ``target.<label>.*`` -> ``{target}``, ``psi.<res>.<some|full>.*``
-> ``{resource, type}``, ``tcp.conn.<state>`` -> ``novatune_tcp_connections{state}``,
``load.<N>m`` -> ``novatune_load<N>``. HELP gives the metric pattern, a
description and the unit.

Tuner state (studies, trials, best values) is the service's: see
``experiments.service.exposition``, which registers this module's
:class:`HostCollector` next to its own collectors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

if TYPE_CHECKING:  # no import-time dependency on the sampler module
    from collectors.metrics import MetricInfo, MetricsSampler

__all__ = [
    "PREFIX",
    "HostCollector",
    "PromName",
    "build_registry",
    "host_families",
    "prom_name",
    "render",
]

PREFIX = "novatune"
_INVALID = re.compile(r"[^a-zA-Z0-9_]")

# dotted-name pattern -> (family stem, label names); the remainder after the match is the leaf
_RULES: tuple[tuple[re.Pattern[str], str, tuple[str, ...]], ...] = (
    (re.compile(r"^cpu\.(\d+)\.(?P<leaf>.+)$"), "cpu", ("cpu",)),
    (re.compile(r"^disk\.([^.]+)\.(?P<leaf>.+)$"), "disk", ("device",)),
    (re.compile(r"^net\.([^.]+)\.(?P<leaf>.+)$"), "net", ("interface",)),
    (re.compile(r"^target\.((?:pid\d+)|(?:cgroup:.+?))\.(?P<leaf>[^.]+)$"), "target", ("target",)),
    (re.compile(r"^psi\.([^.]+)\.(some|full)\.(?P<leaf>.+)$"), "psi", ("resource", "type")),
    (re.compile(r"^tcp\.conn\.(?P<state>.+)$"), "tcp_connections", ("state",)),
)
_ALL_CPU = re.compile(r"^cpu\.(?P<leaf>[a-z]+_pct)$")  # cpu.<mode>_pct: the all-CPU figure, cpu="all"
_LOAD = re.compile(r"^load\.(\d+)m$")


@dataclass(frozen=True)
class PromName:
    """Where one novatune metric lands: family ``name``, ``labels``, value ``scale``, ``unit`` text."""

    name: str
    labels: tuple[tuple[str, str], ...]
    scale: float
    unit: str
    pattern: str


def _sanitise(text: str) -> str:
    out = _INVALID.sub("_", text).strip("_")
    out = re.sub(r"_+", "_", out)
    return out if out and not out[0].isdigit() else f"_{out}"


def _leaf(leaf: str, unit: str) -> tuple[str, float, str]:
    """(leaf in base units, scale, Prometheus unit text) for a novatune leaf name and unit."""
    base = _sanitise(leaf)
    if unit == "%":
        return re.sub(r"_pct$", "", base) + "_ratio", 0.01, "ratio (0..1)"
    if unit == "ms":
        return re.sub(r"_ms$", "", base) + "_seconds", 1e-3, "seconds"
    if unit == "s/s":
        return re.sub(r"_s_per_s$", "", base) + "_seconds_per_second", 1.0, "seconds per second"
    if unit in ("1/s", "bytes/s"):
        base = re.sub(r"_iops$", "_ops_per_s", base)
        base = re.sub(r"_per_s$", "", base) + "_per_second"
        if unit == "bytes/s" and "bytes" not in base:
            base = base.replace("_per_second", "_bytes_per_second")
        return base, 1.0, "bytes per second" if unit == "bytes/s" else "per second"
    if unit == "bytes":
        return (base if base.endswith("_bytes") else base + "_bytes"), 1.0, "bytes"
    return base, 1.0, "1" if unit == "1" else unit


def prom_name(name: str, unit: str) -> PromName:
    """Map a novatune metric (dotted name, unit) to its Prometheus family, labels and scale."""
    if m := _ALL_CPU.match(name):
        leaf, scale, ptext = _leaf(m.group("leaf"), unit)
        return PromName(f"{PREFIX}_cpu_{leaf}", (("cpu", "all"),), scale, ptext, f"cpu[.<cpu>].{m.group('leaf')}")
    if m := _LOAD.match(name):
        return PromName(f"{PREFIX}_load{m.group(1)}", (), 1.0, "1", name)
    for rx, stem, label_names in _RULES:
        m = rx.match(name)
        if m is None:
            continue
        groups = m.groups()
        if "leaf" in rx.groupindex:
            leaf, scale, ptext = _leaf(m.group("leaf"), unit)
            family = f"{PREFIX}_{stem}_{leaf}"
            values = groups[: len(label_names)]
            pattern = name
            for v, ln in zip(values, label_names):
                pattern = pattern.replace(f".{v}.", f".<{ln}>.", 1)
        else:
            family, scale, ptext = f"{PREFIX}_{stem}", 1.0, "1"
            values = groups[: len(label_names)]
            pattern = re.sub(r"\.[^.]+$", f".<{label_names[0]}>", name)
        return PromName(family, tuple(zip(label_names, values)), scale, ptext, pattern)
    leaf, scale, ptext = _leaf(name, unit)
    return PromName(f"{PREFIX}_{leaf}", (), scale, ptext, name)


def host_families(values: Mapping[str, float], infos: Iterable[MetricInfo]) -> list[Metric]:
    """Gauge families for one ``MetricsSampler.sample()`` result (``infos`` from ``.metrics()``).

    Values without a ``MetricInfo`` or that are not finite are left out; if two
    names map onto the same family and labels, the first wins; a name whose labels
    do not fit the family already built is left out (never an invalid exposition).
    """
    by_name = {i.name: i for i in infos}
    fams: dict[str, tuple[GaugeMetricFamily, tuple[str, ...], set[tuple[str, ...]]]] = {}
    for name, value in values.items():
        info = by_name.get(name)
        if info is None or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        pn = prom_name(name, info.unit)
        label_names = tuple(k for k, _ in pn.labels)
        label_values = tuple(v for _, v in pn.labels)
        if pn.name not in fams:
            desc = info.description or name
            help_text = f"{desc}. novatune metric {pn.pattern} ({info.unit}, {info.kind}); unit: {pn.unit}"
            fams[pn.name] = (GaugeMetricFamily(pn.name, help_text, labels=list(label_names)), label_names, set())
        fam, names_, seen = fams[pn.name]
        if names_ != label_names or label_values in seen:
            continue
        seen.add(label_values)
        fam.add_metric(list(label_values), float(value) * pn.scale)
    return [f for f, _, _ in fams.values()]


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class HostCollector:
    """Custom collector: samples ``sampler`` on every scrape (see module doc)."""

    def __init__(self, sampler: MetricsSampler) -> None:
        self.sampler = sampler

    def collect(self) -> Iterator[Metric]:
        values = self.sampler.sample()
        yield from host_families(values, self.sampler.metrics())


def build_registry(
    *,
    sampler: MetricsSampler | None = None,
) -> CollectorRegistry:
    """A fresh :class:`CollectorRegistry` (never the global one) with the given collectors."""
    registry = CollectorRegistry(auto_describe=False)
    if sampler is not None:
        registry.register(HostCollector(sampler))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition (format 0.0.4) of ``registry``."""
    return generate_latest(registry)
