"""What every metric source shares: the metric description, one snapshot of raw counters, and the reader.

:class:`SourceIO` reads files under the sampler's root through
:class:`collectors.rootfs.RootReader` (a path that leaves the root reads as a
permission error) and reports each failure once: a warning on the
``collectors.metrics`` logger and an entry in ``gaps``.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from collectors.rootfs import RootReader

__all__ = ["DT", "KINDS", "SAFE_NAME", "MetricInfo", "Snapshot", "SourceIO"]

#: the sampler's logger (the sources live in submodules; the messages keep one name)
log = logging.getLogger("collectors.metrics")

KINDS = ("gauge", "counter")
#: device / interface names a metric name may carry
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.:@+-]+$")
DT = "@dt"  # denominator key meaning "elapsed seconds"


@dataclass(frozen=True)
class MetricInfo:
    """One metric: ``unit`` (``"%"``, ``"bytes"``, ``"1/s"``, ``"bytes/s"``, ``"ms"``, ``"1"``, ...),
    ``kind`` (``"gauge"`` | ``"counter"``, see module doc) and ``source`` (the file under the root)."""

    name: str
    unit: str
    kind: str
    source: str
    description: str = ""


@dataclass
class Snapshot:
    """One read of everything: gauges, raw cumulative counters, and derived-metric recipes."""

    t: float
    gauges: dict[str, float] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)
    # metric name -> (numerator raw key, denominator raw key or DT, scale)
    derived: dict[str, tuple[str, str, float]] = field(default_factory=dict)
    infos: dict[str, MetricInfo] = field(default_factory=dict)

    def gauge(self, name: str, value: float, unit: str, source: str, desc: str = "") -> None:
        self.gauges[name] = float(value)
        self.infos[name] = MetricInfo(name, unit, "gauge", source, desc)

    def rate(self, name: str, value: float, unit: str, source: str, desc: str = "", *, scale: float = 1.0) -> None:
        """A counter reported as ``scale * d(value) / dt``."""
        self.raw[name] = float(value)
        self.derived[name] = (name, DT, scale)
        self.infos[name] = MetricInfo(name, unit, "counter", source, desc)

    def ratio(self, name: str, num: str, den: str, scale: float, unit: str, source: str, desc: str = "") -> None:
        """``scale * d(raw[num]) / d(raw[den])`` (``den`` may be ``DT``); raw keys set by the caller."""
        self.derived[name] = (num, den, scale)
        self.infos[name] = MetricInfo(name, unit, "counter", source, desc)


class SourceIO:
    """Reads under ``root`` for the metric sources and keeps ``gaps`` (what could not be read, once).

    Args:
        root: where ``proc/`` and ``sys/`` live; absolute paths given to the
            ``*_abs`` methods (cgroup directories) must be under it.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.fs = RootReader(root)
        self.gaps: dict[str, str] = {}

    def refresh(self) -> None:
        """Resolve the root again (once per sample: a root that is a symlink may be re-pointed in between,
        as tests do to replay recorded trees)."""
        self.fs = RootReader(self.root)

    def gap(self, name: str, reason: str) -> None:
        """Report ``name`` as unavailable (a warning and a ``gaps`` entry), the first time only."""
        if name not in self.gaps:
            self.gaps[name] = reason
            log.warning("metrics: %s unavailable: %s (reported once)", name, reason)

    def _bytes(self, rel: str) -> bytes:
        try:
            return self.fs.read_bytes(rel)
        except self.fs.unsafe_error as err:
            raise PermissionError(errno.EACCES, str(err)) from err

    def read(self, rel: str, gap: str | None = None) -> str | None:
        """The root-relative file ``rel`` as text; None (and the gap ``gap``, when named) if unreadable."""
        try:
            return self._bytes(rel).decode("ascii", "replace")
        except OSError as err:
            if gap is not None:
                self.gap(gap, f"/{rel}: {err.strerror or err}")
            return None

    def listdir(self, rel: str) -> list[str] | None:
        """Entries of the root-relative directory ``rel``; None when it cannot be listed."""
        try:
            return self.fs.listdir(rel, strict=True)
        except (OSError, self.fs.unsafe_error):
            return None

    def text_abs(self, path: Path) -> str:
        """The file ``path`` (absolute, under the root) as text.

        Raises:
            OSError: it cannot be read (a path outside the root: ``PermissionError``).
        """
        return self._bytes(os.path.relpath(path, self.root)).decode()

    def read_abs(self, path: Path, gap: str) -> str | None:
        """:meth:`text_abs`, or None and the gap ``gap``."""
        try:
            return self.text_abs(path)
        except OSError as err:
            self.gap(gap, f"{path}: {err.strerror or err}")
            return None

    def number(self, path: Path, gap: str) -> float | None:
        """The number in the file ``path``, or None and the gap ``gap`` (unreadable or not a number)."""
        text = self.read_abs(path, gap)
        if text is None:
            return None
        try:
            return float(text.strip())
        except ValueError:
            self.gap(gap, f"{path}: not a number ({text[:40]!r})")
            return None
