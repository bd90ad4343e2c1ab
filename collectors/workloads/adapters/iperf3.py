"""iperf3: a bounded TCP test against 127.0.0.1 with JSON output; bits/s and retransmits."""

from __future__ import annotations

import json
from dataclasses import dataclass

from collectors.workloads.adapters._base import AdapterError, AdapterResult, check_count, check_duration, to_float

__all__ = ["Iperf3Adapter", "parse_iperf3"]

TOOL = "iperf3"


@dataclass(frozen=True, kw_only=True)
class Iperf3Adapter:
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
    if not isinstance(end, dict) or not isinstance(end.get("sum_received"), dict) or not isinstance(end.get("sum_sent"), dict):
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
