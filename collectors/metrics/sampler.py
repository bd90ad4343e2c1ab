"""The sampler: every metric source read into one snapshot per call, counters turned into rates."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable

from collectors.metrics.host import HostSources
from collectors.metrics.snapshot import DT, MetricInfo, Snapshot, SourceIO
from collectors.metrics.targets import Target, TargetSources, parse_target

__all__ = ["MetricsSampler"]


class MetricsSampler:
    """Sample the metric registry (see :mod:`collectors.metrics`) from ``root``.

    Args:
        root: where ``proc/`` and ``sys/`` live (default ``/``).
        targets: pids (int or digit strings), cgroup directories, or :class:`Target`.
        clock: seconds, monotonic (tests inject one).
        tcp_states_every_s: re-read ``/proc/net/tcp`` and ``tcp6`` (a walk over
            every socket, ~1 ms here and growing with the connection count) at
            most this often; in between the last counts are reported. 0 = every sample.

    Raises:
        CollectorError: a target does not exist when the sampler is built.
    """

    def __init__(
        self,
        *,
        root: str | os.PathLike[str] = "/",
        targets: Iterable[str | int | Target] = (),
        clock: Callable[[], float] = time.monotonic,
        tcp_states_every_s: float = 10.0,
    ) -> None:
        self._io = SourceIO(root)
        self.root = self._io.root
        self.targets = [t if isinstance(t, Target) else parse_target(t, root=self.root) for t in targets]
        self._clock = clock
        #: what could not be read, and why (each reported once)
        self.gaps: dict[str, str] = self._io.gaps
        self._host = HostSources(self._io, tcp_states_every_s=tcp_states_every_s)
        self._targets = TargetSources(self._io)
        self._prev: Snapshot | None = None
        self._last: Snapshot | None = None

    @property
    def tcp_states_every_s(self) -> float:
        """How often the TCP connection states are re-read, in seconds (0: every sample)."""
        return self._host.tcp_states_every_s

    @tcp_states_every_s.setter
    def tcp_states_every_s(self, value: float) -> None:
        self._host.tcp_states_every_s = value

    def sample(self) -> dict[str, float]:
        """Read every source now; return gauges, plus counter-derived metrics from the 2nd call on."""
        snap = self._snapshot()
        out = dict(snap.gauges)
        prev = self._prev
        if prev is not None:
            dt = snap.t - prev.t
            for name, (num, den, scale) in snap.derived.items():
                if num not in prev.raw or num not in snap.raw:
                    continue
                dn = snap.raw[num] - prev.raw[num]
                if den == DT:
                    dd = dt
                elif den in prev.raw and den in snap.raw:
                    dd = snap.raw[den] - prev.raw[den]
                else:
                    continue
                if dn < 0 or dd < 0:
                    continue  # counter reset or wrap
                out[name] = scale * dn / dd if dd > 0 else 0.0
        self._prev = snap
        self._last = snap
        return out

    def metrics(self) -> list[MetricInfo]:
        """Every metric this sampler reports here (reads the sources once if never sampled)."""
        if self._last is None:
            self._last = self._snapshot()
        return list(self._last.infos.values())

    def _snapshot(self) -> Snapshot:
        s = Snapshot(t=self._clock())
        self._io.refresh()
        self._host.read(s)
        self._targets.read(s, self.targets)
        return s
