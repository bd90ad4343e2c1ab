"""Synthetic usage series of several shapes, seeded, for tests and the replay benchmark. Pure.

Shapes (:data:`SHAPES`):

* ``steady`` -- a flat level with small noise (a well-behaved service).
* ``near-full`` -- demand around or above the capacity; the CPU usage is clipped at it (what a
  saturated VM reports: its true demand is censored).
* ``short`` -- steady, but only 3 days of history.
* ``bursty`` -- a low base with random spikes of random height and length (batch jobs, cron).
* ``trending`` -- both resources grow linearly over the whole series.
* ``daily`` -- a daily cycle (busy working hours, quiet nights).
* ``weekly`` -- busy weekdays, quiet weekends, with a daily cycle.
* ``leak`` -- memory grows steadily (a leak) and drops back at a restart every 9 days; CPU steady.

Each series has a provisioned size (``cpu_capacity``, ``mem_capacity``) drawn from the usual machine
sizes; usage is a random share of it (except ``near-full``).
"""

from __future__ import annotations

import numpy as np

from optimizer.rightsizing.model import UsageSeries

__all__ = ["SHAPES", "fleet", "generate"]

SHAPES = ("steady", "near-full", "short", "bursty", "trending", "daily", "weekly", "leak")
_CORES = (1, 2, 4, 8, 16)
_START = 1_700_000_000.0  # 2023-11-14, a Tuesday


def _cycle(t: np.ndarray, rng: np.random.Generator, *, weekly: bool) -> np.ndarray:
    """A 0..1 activity profile: high in working hours (a smooth bump), with weekend dips if ``weekly``."""
    hour = ((t - _START) / 3600.0 + rng.uniform(0, 24)) % 24
    day = np.exp(-0.5 * ((hour - 14.0) / 3.0) ** 2)
    if weekly:
        dow = (((t - _START) / 86400.0) % 7).astype(int)
        day = day * np.where(dow >= 5, 0.25, 1.0)
    return day


def _bursts(n: int, rng: np.random.Generator, *, rate: float, mean_len: int) -> np.ndarray:
    """0..1 pulses: about ``rate`` starts per sample, each of a geometric length and a random height."""
    out = np.zeros(n)
    for s in np.flatnonzero(rng.random(n) < rate):
        length = int(rng.geometric(1.0 / mean_len))
        out[s:s + length] = np.maximum(out[s:s + length], rng.uniform(0.3, 1.0))
    return out


def _shape(shape: str, t: np.ndarray, rng: np.random.Generator, cap_cpu: float, cap_mem: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """``(cpu demand in cores, memory in GiB)`` before noise and clipping."""
    n = len(t)
    days = (t - t[0]) / 86400.0
    lvl = rng.uniform(0.1, 0.5)
    mem_lvl = rng.uniform(0.15, 0.5) * cap_mem
    if shape in ("steady", "short"):
        return np.full(n, lvl * cap_cpu), np.full(n, mem_lvl)
    if shape == "near-full":
        return np.full(n, rng.uniform(0.9, 1.3) * cap_cpu), np.full(n, rng.uniform(0.6, 0.85) * cap_mem)
    if shape == "bursty":
        b = _bursts(n, rng, rate=0.01, mean_len=6)
        mb = _bursts(n, rng, rate=0.002, mean_len=12)
        return (0.05 + 0.85 * b) * cap_cpu * lvl * 2, mem_lvl * (1 + 0.6 * mb)
    if shape == "trending":
        growth = rng.uniform(0.03, 0.08)  # share of the level per day
        return lvl * cap_cpu * (1 + growth * days), mem_lvl * (1 + 0.5 * growth * days)
    if shape in ("daily", "weekly"):
        c = _cycle(t, rng, weekly=shape == "weekly")
        return cap_cpu * (0.05 + 0.7 * lvl * 2 * c), mem_lvl * (0.8 + 0.4 * c)
    if shape == "leak":
        since_restart = days % 9.0
        return np.full(n, lvl * cap_cpu), mem_lvl * (0.5 + 0.12 * since_restart)
    raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")


def generate(shape: str, *, seed: int, days: float = 10.0, interval_s: float = 300.0, target: str | None = None,
             start: float = _START, cores: int | None = None, mem_gib: float | None = None) -> UsageSeries:
    """One series of ``shape`` (``short`` is always 3 days long), seeded, with its provisioned size.

    Raises:
        ValueError: an unknown shape, or ``days``/``interval_s`` not positive.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; allowed: {', '.join(SHAPES)}")
    if days <= 0 or interval_s <= 0:
        raise ValueError("days and interval_s must be > 0")
    rng = np.random.default_rng(seed)
    span = 3.0 if shape == "short" else days
    t = start + np.arange(int(span * 86400 / interval_s)) * interval_s
    cap_cpu = float(cores if cores is not None else rng.choice(_CORES))
    cap_mem = float(mem_gib if mem_gib is not None else cap_cpu * rng.choice((2.0, 4.0, 8.0)))
    cpu, mem = _shape(shape, t, rng, cap_cpu, cap_mem)
    cpu = cpu * np.exp(rng.normal(0, 0.15, len(t)))
    mem = mem * (1 + np.cumsum(rng.normal(0, 0.002, len(t))).clip(-0.1, 0.1)) * np.exp(rng.normal(0, 0.01, len(t)))
    cpu = np.minimum(np.maximum(cpu, 0.0), cap_cpu * 1.02)  # a VM cannot use much more than it has
    mem = np.minimum(np.maximum(mem, 0.0), cap_mem)
    n = len(t)
    return UsageSeries(target=target or f"{shape}-{seed}", t=t, cpu_cores=cpu, mem_gib=mem,
                       cpu_capacity=np.full(n, cap_cpu), mem_capacity=np.full(n, cap_mem))


def fleet(shape: str, n: int, *, seed: int, days: float = 10.0, interval_s: float = 300.0) -> dict[str, UsageSeries]:
    """``n`` series of ``shape`` named ``<shape>-<seed>-<i>``, each with its own seed derived from ``seed`` and
    the shape.

    Raises:
        ValueError: see :func:`generate`.
    """
    # the shape is part of the seed: fleets of two shapes share no draws (steady and leak have the same CPU model)
    seeds = np.random.SeedSequence([seed, SHAPES.index(shape) if shape in SHAPES else 0]).spawn(n)
    out = {}
    for i, s in enumerate(seeds):
        name = f"{shape}-{seed}-{i}"
        out[name] = generate(shape, seed=int(s.generate_state(1)[0]), days=days, interval_s=interval_s, target=name)
    return out
