"""Record a :class:`MetricsSampler` into a bounded :class:`SeriesStore` in the background.

One :class:`Recorder` per measurement window::

    rec = Recorder(MetricsSampler(targets=[cgroup_dir]), interval_s=1.0)
    rec.start()
    ...  # the workload runs
    frame = rec.stop()        # DatetimeIndex "time", one column per metric, attrs["units"]

Memory is bounded by ``max_rows`` (the store is a ring buffer: a long window
keeps its newest samples and counts the dropped ones). The partial interval
before :meth:`Recorder.stop` is sampled too, so a window shorter than the
interval still yields one row; ``frame.attrs["started"]`` is when sampling
began (UTC), for trimming a warm-up by wall time. The sampler's gaps
(files missing or unreadable, a target that vanished) are reported once, by
the sampler, and are copied into ``frame.attrs["gaps"]``; a target that
vanished also sets ``frame.attrs["vanished"]`` so the caller can end the
window with that reason instead of scoring it.
"""

from __future__ import annotations

import threading
import time

import pandas as pd

from collectors.metrics import MetricsSampler
from collectors.store import SeriesStore

__all__ = ["Recorder"]


class Recorder:
    """Sample ``sampler`` every ``interval_s`` seconds in a daemon thread.

    Args:
        sampler: what to read; its first sample primes the counters.
        interval_s: seconds between samples, in (0, 3600].
        max_rows: ring-buffer size (oldest samples dropped past it).

    Raises:
        ValueError: ``interval_s`` or ``max_rows`` out of range.
    """

    def __init__(self, sampler: MetricsSampler, *, interval_s: float = 1.0, max_rows: int = 7200) -> None:
        if not (0 < interval_s <= 3600):
            raise ValueError(f"interval_s must be in (0, 3600], got {interval_s!r}")
        self.sampler = sampler
        self.interval_s = float(interval_s)
        self.max_rows = max_rows
        units = {m.name: m.unit for m in sampler.metrics()}
        self.store = SeriesStore(max_rows=max_rows, units=units or {"none": "1"})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.cpu_s = 0.0  # the recorder thread's own CPU time (overhead accounting)
        self.started: pd.Timestamp | None = None

    def _loop(self) -> None:
        t_cpu = time.thread_time()
        self.sampler.sample()  # prime the counters
        next_t = time.monotonic() + self.interval_s
        last = time.monotonic()
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            self.store.append(self.sampler.sample())
            last = time.monotonic()
            next_t += self.interval_s
            if next_t < time.monotonic():  # fell behind (suspended VM): do not burst
                next_t = time.monotonic() + self.interval_s
        if time.monotonic() - last >= min(0.1, self.interval_s / 2):
            self.store.append(self.sampler.sample())  # the partial last interval: a short window still gets a sample
        self.cpu_s = time.thread_time() - t_cpu

    def start(self) -> None:
        """Start sampling. Raises RuntimeError when already running."""
        if self._thread is not None:
            raise RuntimeError("Recorder already started")
        self.started = pd.Timestamp.now(tz="UTC")
        self._thread = threading.Thread(target=self._loop, name="novatune-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> pd.DataFrame:
        """Stop sampling and return what was recorded (see module doc); idempotent."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=self.interval_s + 10.0)
        frame = self.store.frame()
        gaps = dict(self.sampler.gaps)
        frame.attrs["gaps"] = gaps
        labels = {f"target.{t.label}" for t in self.sampler.targets}
        frame.attrs["vanished"] = {k: v for k, v in gaps.items() if k in labels}
        frame.attrs["dropped"] = self.store.dropped
        frame.attrs["started"] = self.started
        return frame
