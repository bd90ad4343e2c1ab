"""The overhead budget: how much a profiling window costs its target, and the rate and py-spy flags of the next.

Pure: figures of one window in (:class:`WindowFigures`), the overhead figures recorded in the window's
``meta.overhead`` (:func:`measure`) and the next window's rate and flags (:func:`next_window`) out. The sampler
measures the inputs (py-spy's CPU from the kernel's rusage of the reaped py-spy process, the host's busy CPU
from ``/proc/stat``, py-spy's own "behind in sampling" and "Errors: N" output).

**The model** (estimates, stated as such; ``benchmarks/profiler_overhead.py`` measures the real loss):

* *blocking* (py-spy's default): every sampling round stops every thread of the target (ptrace) while
  py-spy reads the stacks, so the target loses the paused share of its wall time whatever the host's load.
  The pause is at least py-spy's CPU time (it works while the target is stopped) and grows with the thread
  count (one attach/detach per thread) and the scheduler's wake-up latency: ``pause ~= PAUSE_BASE_S +
  PAUSE_PER_THREAD_S * threads`` per round (``benchmarks/profiler_overhead.py --blocking`` on the 2-vCPU VM:
  1 thread at 100 Hz lost ~8 %, 100 threads at 5 Hz ~10-12 %). The estimate is the larger of the two:
  ``est_slowdown = max(pyspy_cpu_s, rate_hz * window_s * pause) / window_s``.
* *nonblocking*: the target is never stopped; it loses only the CPU py-spy takes from it when the host has
  no idle CPU (with a free core, ``benchmarks/profiler_overhead.py`` measures 0.00 % +- 0.15 at 100 Hz). On a
  saturated host py-spy's CPU comes out of the busy tasks, and the profiled target bears more than its
  proportional share (measured on the 2-vCPU VM: ~87 % of py-spy's CPU with two CPU-bound twins, about twice
  its share), so the estimate is ``CONTENTION_FACTOR * pyspy_cpu_s / busy_cpu_s`` (busy: every task's CPU over
  the window), weighted by how saturated the host was (0 below 80 % busy, 1 at 100 %). Below saturation it
  is 0 (cache and memory-bandwidth effects are not modelled).

**The controller** keeps ``est_slowdown_pct <= budget_pct`` (default 1 % of the target's throughput) and
py-spy's CPU ``<= cpu_cap_pct`` of one core (default 5 %), between ``floor_hz`` (5) and ``max_hz`` (100):
the next rate is what the last window's cost per Hz allows, with ``headroom``, rising at most
``max_step_up`` times per window; py-spy falling behind, or more than 1 % of its samples in error, halves
the rate. Flags, when not forced: ``--nonblocking`` unless native stacks are asked (py-spy needs the pause
for them) or the modelled blocking pause at this rate fits the budget; ``--gil`` in CPU mode when the
target has more than ``gil_threads`` threads (only the thread holding the GIL runs Python; py-spy then
reads one stack, not all). Wall mode never takes ``--gil`` (it would drop the idle threads it is for).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONTENTION_FACTOR",
    "PAUSE_BASE_S",
    "PAUSE_PER_THREAD_S",
    "BudgetConfig",
    "Decision",
    "WindowFigures",
    "blocking_slowdown_pct",
    "choose_flags",
    "measure",
    "next_window",
]

#: blocking mode's modelled pause per sampling round: a base (attach/detach, wake-up latency) ...
PAUSE_BASE_S = 1.0e-3
#: ... and a part per thread of the target
PAUSE_PER_THREAD_S = 0.2e-3
#: how much more than its proportional share of py-spy's CPU a profiled target loses on a saturated host
CONTENTION_FACTOR = 2.0


@dataclass(frozen=True, kw_only=True)
class BudgetConfig:
    """The budget and the controller's bounds.

    ``budget_pct``: the target's allowed slowdown (% of its throughput); ``cpu_cap_pct``: py-spy's allowed CPU
    (% of one core); ``floor_hz``/``max_hz``: the rate's bounds; ``headroom``: the share of the budget aimed
    at; ``max_step_up``: the largest rise per window; ``backoff``: the factor on "behind"/errors;
    ``gil_threads``: above this many threads CPU mode takes ``--gil``.
    """

    budget_pct: float = 1.0
    cpu_cap_pct: float = 5.0
    floor_hz: int = 5
    max_hz: int = 100
    headroom: float = 0.8
    max_step_up: float = 1.5
    backoff: float = 0.5
    gil_threads: int = 8

    def __post_init__(self) -> None:
        if not 0 < self.budget_pct <= 100 or not 0 < self.cpu_cap_pct <= 100:
            raise ValueError("budget_pct and cpu_cap_pct must be in (0, 100]")
        if not 1 <= self.floor_hz <= self.max_hz:
            raise ValueError("floor_hz must be >= 1 and <= max_hz")
        if not 0 < self.headroom <= 1 or self.max_step_up < 1 or not 0 < self.backoff < 1:
            raise ValueError("headroom in (0, 1], max_step_up >= 1, backoff in (0, 1)")


@dataclass(frozen=True, kw_only=True)
class WindowFigures:
    """What one window measured.

    ``pyspy_cpu_s``: py-spy's user + system CPU; ``samples``/``errors``/``behind_s``: py-spy's own report;
    ``host_busy_frac``: the host's busy share of all its CPUs over the window, ``host_busy_cpu_s`` the busy
    CPU seconds (all tasks, py-spy included).
    """

    rate_hz: int
    window_s: float
    pyspy_cpu_s: float
    samples: int = 0
    errors: int = 0
    behind_s: float = 0.0
    nonblocking: bool = True
    gil: bool = False
    threads: int = 1
    host_busy_frac: float = 0.0
    host_busy_cpu_s: float = 0.0

    @classmethod
    def from_overhead(cls, overhead: dict[str, float]) -> WindowFigures:
        """The figures a window's ``meta.overhead`` (written by :func:`measure`) holds."""
        return cls(rate_hz=int(overhead.get("rate_hz", 0)), window_s=overhead.get("window_s", 0.0),
                   pyspy_cpu_s=overhead.get("pyspy_cpu_s", 0.0), samples=int(overhead.get("samples", 0)),
                   errors=int(overhead.get("errors", 0)), behind_s=overhead.get("behind_s", 0.0),
                   nonblocking=bool(overhead.get("nonblocking", 1.0)), gil=bool(overhead.get("gil", 0.0)),
                   threads=int(overhead.get("threads", 1)), host_busy_frac=overhead.get("host_busy_pct", 0.0) / 100,
                   host_busy_cpu_s=overhead.get("host_busy_cpu_s", 0.0))


@dataclass(frozen=True)
class Decision:
    """The next window's rate and flags, and why (one line)."""

    rate_hz: int
    nonblocking: bool
    gil: bool
    reason: str


def blocking_slowdown_pct(rate_hz: float, threads: int) -> float:
    """The modelled slowdown (%) of blocking sampling at ``rate_hz`` of a target with ``threads`` threads."""
    return 100.0 * rate_hz * (PAUSE_BASE_S + PAUSE_PER_THREAD_S * max(1, threads))


def _saturation(busy_frac: float) -> float:
    return min(1.0, max(0.0, (busy_frac - 0.8) / 0.2))


def measure(fig: WindowFigures, config: BudgetConfig | None = None) -> dict[str, float]:
    """The window's overhead figures, as recorded in ``meta.overhead``: ``rate_hz``, ``pyspy_cpu_pct`` (% of
    one core), ``est_slowdown_pct``, ``budget_pct``, ``nonblocking``/``gil`` (1 or 0), ``behind`` (1 when
    py-spy said it fell behind), ``behind_s``, ``errors``, ``samples``, ``threads``, ``host_busy_pct``, and the
    raw inputs ``window_s``, ``pyspy_cpu_s``, ``host_busy_cpu_s`` (:meth:`WindowFigures.from_overhead`)."""
    cfg = config if config is not None else BudgetConfig()
    window = max(fig.window_s, 1e-3)
    cpu_pct = 100.0 * fig.pyspy_cpu_s / window
    if fig.nonblocking:
        busy = max(fig.host_busy_cpu_s, fig.pyspy_cpu_s, 1e-9)
        est = min(100.0, _saturation(fig.host_busy_frac) * CONTENTION_FACTOR * 100.0 * fig.pyspy_cpu_s / busy)
    else:
        # (py-spy's "Samples" counts stack traces, one per thread per round: the rounds are rate x window)
        pause = fig.rate_hz * window * (PAUSE_BASE_S + PAUSE_PER_THREAD_S * max(1, fig.threads))
        est = min(100.0, 100.0 * max(fig.pyspy_cpu_s, pause) / window)
    return {
        "rate_hz": float(fig.rate_hz),
        "pyspy_cpu_pct": round(cpu_pct, 4),
        "est_slowdown_pct": round(est, 4),
        "budget_pct": cfg.budget_pct,
        "nonblocking": 1.0 if fig.nonblocking else 0.0,
        "gil": 1.0 if fig.gil else 0.0,
        "behind": 1.0 if fig.behind_s > 0 else 0.0,
        "behind_s": round(fig.behind_s, 3),
        "errors": float(fig.errors),
        "samples": float(fig.samples),
        "threads": float(fig.threads),
        "host_busy_pct": round(100.0 * fig.host_busy_frac, 4),
        "window_s": round(fig.window_s, 3),
        "pyspy_cpu_s": round(fig.pyspy_cpu_s, 4),
        "host_busy_cpu_s": round(fig.host_busy_cpu_s, 3),
    }


def choose_flags(*, threads: int, mode: str, native: bool, rate_hz: int, nonblocking: bool | None = None,
                 gil: bool | None = None, config: BudgetConfig | None = None) -> tuple[bool, bool, str]:
    """``(nonblocking, gil, reason)`` for a window at ``rate_hz`` of a target with ``threads`` threads; a flag
    given (not None) is kept. See the module docstring for the rule."""
    cfg = config if config is not None else BudgetConfig()
    why = []
    if nonblocking is None:
        blocking_cost = blocking_slowdown_pct(rate_hz, threads)
        if native:
            nonblocking, what = False, "blocking (native stacks need the pause)"
        elif blocking_cost <= cfg.budget_pct:
            nonblocking, what = False, f"blocking (modelled pause {blocking_cost:.2f} % <= budget)"
        else:
            nonblocking = True
            what = (f"--nonblocking (blocking would pause {threads} thread(s) ~{blocking_cost:.1f} % of the time "
                    f"at {rate_hz} Hz > budget {cfg.budget_pct:g} %)")
        why.append(what)
    if gil is None:
        gil = mode == "cpu" and threads > cfg.gil_threads
        if gil:
            why.append(f"--gil ({threads} threads > {cfg.gil_threads}: only the GIL holder runs Python)")
    return nonblocking, gil, "; ".join(why) or "flags as given"


def _clamp(rate: float, cfg: BudgetConfig) -> int:
    return int(max(cfg.floor_hz, min(cfg.max_hz, round(rate))))


def next_window(fig: WindowFigures, config: BudgetConfig | None = None, *, mode: str = "cpu", native: bool = False,
                nonblocking: bool | None = None, gil: bool | None = None) -> Decision:
    """The next window's rate and flags from this window's figures (flags given stay as given).

    Never below ``floor_hz`` nor above ``max_hz``; when even the floor is over the budget the decision says so
    (the floor is kept: sampling slower gives too few samples to be worth a window).
    """
    cfg = config if config is not None else BudgetConfig()
    figures = measure(fig, cfg)
    rate = float(fig.rate_hz)
    aim = cfg.budget_pct * cfg.headroom
    limits = [rate * cfg.max_step_up, float(cfg.max_hz)]
    per_hz_slow = figures["est_slowdown_pct"] / rate
    per_hz_cpu = figures["pyspy_cpu_pct"] / rate
    if per_hz_slow > 0:
        limits.append(aim / per_hz_slow)
    if per_hz_cpu > 0:
        limits.append(cfg.cpu_cap_pct * cfg.headroom / per_hz_cpu)
    target = min(limits)
    reasons = [f"last window {fig.rate_hz} Hz: est. slowdown {figures['est_slowdown_pct']:.2f} % "
               f"(budget {cfg.budget_pct:g} %), py-spy {figures['pyspy_cpu_pct']:.2f} % of a core"]
    if fig.behind_s > 0 or (fig.samples and fig.errors > 0.01 * fig.samples):
        target = min(target, rate * cfg.backoff)
        reasons.append(f"backing off (behind {fig.behind_s:.2f} s, {fig.errors} errors)")
    new_rate = _clamp(target, cfg)
    if target < cfg.floor_hz:
        reasons.append(f"over budget even at the floor {cfg.floor_hz} Hz")
    nb, g, flags = choose_flags(threads=fig.threads, mode=mode, native=native, rate_hz=new_rate,
                                nonblocking=nonblocking, gil=gil, config=cfg)
    return Decision(new_rate, nb, g, "; ".join([*reasons, f"next {new_rate} Hz", flags]))
