"""HTTP probe: latency percentiles of a running endpoint, bounded in count and time.

One request at a time (a probe, not a load generator), with a per-request
timeout. Only loopback and literal addresses the caller passes are contacted;
nothing is resolved through DNS unless the URL says so.
"""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

import numpy as np

from collectors.errors import CollectorError

__all__ = ["ProbeResult", "check_http_url", "probe"]


@dataclass(frozen=True)
class ProbeResult:
    """``requests`` answered with a 2xx/3xx status, ``errors`` the rest (timeouts, 4xx/5xx, refused)."""

    url: str
    requests: int
    errors: int
    duration_s: float
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    last_error: str | None

    @property
    def error_rate(self) -> float:
        total = self.requests + self.errors
        return self.errors / total if total else 1.0

    def metrics(self) -> dict[str, float]:
        return {
            "probe_requests": float(self.requests),
            "probe_error_rate": self.error_rate,
            "latency_p50_ms": self.latency_p50_ms,
            "latency_p95_ms": self.latency_p95_ms,
            "latency_p99_ms": self.latency_p99_ms,
        }


def check_http_url(url: str, shape: str) -> None:
    """Raises :class:`CollectorError` unless ``url`` is http(s) with a host (``shape`` goes in the message)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CollectorError(f"{shape}, got {url!r}")


def probe(
    url: str, *, count: int = 50, duration_s: float = 10.0, interval_s: float = 0.0, timeout_s: float = 2.0
) -> ProbeResult:
    """Send up to ``count`` GETs to ``url`` within ``duration_s`` and time each.

    Raises:
        CollectorError: not an http(s) URL, or bounds outside 1..100000 requests / (0, 3600] s.
    """
    check_http_url(url, "probe URL must be http(s)://HOST[:PORT]/PATH")
    if not 1 <= count <= 100_000:
        raise CollectorError(f"probe count must be in 1..100000, got {count}")
    if not 0 < duration_s <= 3600 or not 0 < timeout_s <= 60 or interval_s < 0:
        raise CollectorError("probe duration must be in (0, 3600] s, timeout in (0, 60] s, interval >= 0")
    lat: list[float] = []
    errors, last_error = 0, None
    start = time.monotonic()
    deadline = start + duration_s
    for _ in range(count):
        if time.monotonic() >= deadline:
            break
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp:
                resp.read()
                status = resp.status
        except urllib.error.HTTPError as err:
            status, last_error = err.code, f"HTTP {err.code}"
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            status, last_error = None, str(getattr(err, "reason", err))
        if status is not None and 200 <= status < 400:
            lat.append((time.perf_counter() - t0) * 1000.0)
        else:
            errors += 1
        # a refused connection returns at once: pace it (>= 50 ms) instead of spinning through the count
        pause = interval_s if status is not None else max(interval_s, 0.05)
        if pause:
            time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
    arr = np.asarray(lat)
    pct = [float(np.percentile(arr, q)) if arr.size else math.nan for q in (50, 95, 99)]
    return ProbeResult(url, len(lat), errors, time.monotonic() - start, pct[0], pct[1], pct[2], last_error)
