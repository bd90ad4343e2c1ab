"""iperf3: the adapter (a bounded TCP test against 127.0.0.1 with JSON output; bits/s and
retransmits) and :class:`Iperf3Workload`, whose persistent ``iperf3 -s`` is the tuned process."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pandas as pd

from collectors.workloads.tools.adapter import (
    AdapterBase,
    AdapterError,
    AdapterResult,
    check_count,
    check_duration,
    to_float,
    which_or_error,
)
from collectors.workloads.tools.workload import LOOPBACK, ToolWorkload, check_int, free_port, make_adapter

__all__ = ["Iperf3Adapter", "Iperf3Workload", "parse_iperf3"]

TOOL = "iperf3"


@dataclass(frozen=True, kw_only=True)
class Iperf3Adapter(AdapterBase):
    """``iperf3 -c host -p port -t duration_s -J`` (client side).

    The server is ``server_command()`` (``iperf3 -s -1``: one test, then exit).
    """

    port: int
    host: str = "127.0.0.1"
    duration_s: float = 2.0
    streams: int = 1
    tool: str = TOOL

    def max_runtime_s(self) -> float:
        return check_duration(TOOL, "duration_s", self.duration_s) + 10.0

    def command(self) -> list[str]:
        """Raises: AdapterError: an option out of range."""
        t = check_duration(TOOL, "duration_s", self.duration_s)
        check_count(TOOL, "port", self.port, high=65535)
        check_count(TOOL, "streams", self.streams, high=128)
        return ["iperf3", "-c", self.host, "-p", str(self.port), "-t", f"{t:g}", "-P", str(self.streams), "-J"]

    def server_command(self) -> list[str]:
        """The one-shot server on ``host:port``. Raises: AdapterError: bad port."""
        check_count(TOOL, "port", self.port, high=65535)
        return ["iperf3", "-s", "-1", "-B", self.host, "-p", str(self.port)]

    def parse(self, text: str) -> AdapterResult:
        return parse_iperf3(text)


def parse_iperf3(text: str) -> AdapterResult:
    """Parse ``iperf3 -J`` client output.

    Throughput is the receiver's ``bits_per_second`` (``bit/s``); ``extra`` has
    ``sender_bits_per_s``, ``retransmits`` (TCP) and ``bytes``. No latency.

    Raises:
        AdapterError: not JSON, an ``error`` reported by iperf3, or no ``end`` summary.
    """
    stripped = text.strip()
    if not stripped:
        raise AdapterError(TOOL, "printed nothing")
    try:
        obj = json.loads(stripped)
    except json.JSONDecodeError as err:
        raise AdapterError(TOOL, f"output is not JSON ({err}): {stripped[:200]!r}") from err
    if not isinstance(obj, dict):
        raise AdapterError(TOOL, "output is not a JSON object")
    if obj.get("error"):
        raise AdapterError(TOOL, f"reported error: {obj['error']}")
    end = obj.get("end")
    if not isinstance(end, dict) or not all(isinstance(end.get(k), dict) for k in ("sum_received", "sum_sent")):
        raise AdapterError(TOOL, "JSON lacks end.sum_sent / end.sum_received (TCP summary)")
    recv, sent = end["sum_received"], end["sum_sent"]
    extra = {
        "sender_bits_per_s": to_float(TOOL, "end.sum_sent.bits_per_second", sent.get("bits_per_second")),
        "bytes": to_float(TOOL, "end.sum_received.bytes", recv.get("bytes")),
    }
    if "retransmits" in sent:
        extra["retransmits"] = to_float(TOOL, "end.sum_sent.retransmits", sent["retransmits"])
    return AdapterResult(
        tool=TOOL,
        throughput=to_float(TOOL, "end.sum_received.bits_per_second", recv.get("bits_per_second")),
        throughput_unit="bit/s",
        extra=extra,
        raw=obj,
    )


class Iperf3Workload(ToolWorkload):
    """iperf3 TCP over loopback; a persistent ``iperf3 -s`` on 127.0.0.1:<free port> is the tuned process.

    The server runs as user ``nobody`` in its private directory (its working and temp directory; see
    :mod:`collectors.workloads.tools.private`), never as root.

    Options (defaults): ``streams`` (1): 1..128 parallel streams (``-P``).

    A warm-up run of ``warmup_s`` (discarded) when > 0, then a run of
    ``measure_s`` (iperf3 reads ``-t`` as whole seconds: rounded, >= 1).

    Metrics: ``throughput`` (receiver ``bit/s``), ``errors`` (0: iperf3
    reports none; a failure fails the run), ``retransmits``,
    ``sender_bits_per_s``, ``bytes``. Timeline: the per-interval sums
    (``t_s`` = interval end -> ``bits_per_s``, ``retransmits``).
    """

    kind = "iperf3"
    OPTIONS: ClassVar[Mapping[str, Any]] = {"streams": 1}
    METRICS = ("throughput", "errors", "retransmits", "sender_bits_per_s", "bytes")
    BINARIES = ("iperf3",)
    SERVER_USERS = ("nobody",)

    def __init__(self, workdir: str | os.PathLike[str], **options: Any) -> None:
        self.port: int | None = None
        super().__init__(workdir, **options)

    def _validate(self) -> None:
        check_int("iperf3", "streams", self.options["streams"], 1, 128)
        self._adapter(1.0, port=5201).command()

    def _adapter(self, seconds: float, port: int | None = None) -> Iperf3Adapter:
        return make_adapter(
            "iperf3", Iperf3Adapter, port=port if port is not None else self.port, duration_s=seconds,
            streams=self.options["streams"],
        )

    def _start_tuned(self, preexec_fn: Callable[[], None] | None) -> None:
        private = self._server_dir()
        private.open_to()
        self.port = free_port()
        argv = [which_or_error(self.kind, "iperf3"), "-s", "-B", LOOPBACK, "-p", str(self.port)]
        self._spawn_tuned(argv, preexec_fn, private=private)
        port = self.port
        self._wait(lambda: self._listening(port), "iperf3 server")  # no connect: it would count as a test

    def stop(self) -> None:
        super().stop()
        self.port = None

    def _measure(self, warmup_s: float, measure_s: float) -> tuple[AdapterResult, pd.DataFrame | None, list[str]]:
        result, notes = self._warm_then_measure(warmup_s, measure_s)
        rows = []
        for iv in result.raw.get("intervals") or []:
            s = iv.get("sum") if isinstance(iv, dict) else None
            if isinstance(s, dict) and "end" in s and "bits_per_second" in s:
                rows.append((float(s["end"]), float(s["bits_per_second"]), float(s.get("retransmits", math.nan))))
        timeline = (
            pd.DataFrame(rows, columns=["t_s", "bits_per_s", "retransmits"]).set_index("t_s") if rows else None
        )
        return result, timeline, notes
