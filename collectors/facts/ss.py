"""The parser of ``ss -tin`` (iproute2): established TCP connections with their measured RTT and rates."""

from __future__ import annotations

import re

from optimizer.advisors.network import Connection

__all__ = ["parse_ss"]

_LIMITED = re.compile(r"^(rwnd|sndbuf)_limited:[0-9.]+ms\(([0-9.]+)%\)$")
_RATE = re.compile(r"^([0-9.]+)([KMG]?)bps$")
_SCALE = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9}


def _rate(word: str) -> float | None:
    m = _RATE.match(word)
    return float(m.group(1)) * _SCALE[m.group(2)] if m else None


def _details(local: str, peer: str, words: list[str]) -> Connection:
    kv: dict[str, str] = {}
    limited: dict[str, float] = {}
    cc = words[0] if words and re.fullmatch(r"[a-z0-9_]+", words[0]) else None
    for i, w in enumerate(words):
        m = _LIMITED.match(w)
        if m:
            limited[m.group(1)] = float(m.group(2))
        elif w == "delivery_rate" and i + 1 < len(words):
            kv["delivery_rate"] = words[i + 1]
        elif ":" in w and not w.endswith(":"):
            k, _, v = w.partition(":")
            kv.setdefault(k, v)

    def num(key: str) -> int:
        v = kv.get(key, "0")
        return int(v) if v.isdigit() else 0

    rtt = kv.get("rtt", "").split("/")[0]
    minrtt = kv.get("minrtt", "")
    return Connection(
        local=local, peer=peer, rtt_ms=float(rtt) if re.fullmatch(r"[0-9.]+", rtt) else None,
        min_rtt_ms=float(minrtt) if re.fullmatch(r"[0-9.]+", minrtt) else None,
        delivery_rate_bps=_rate(kv.get("delivery_rate", "")), bytes_acked=num("bytes_acked"),
        bytes_received=num("bytes_received"), cc=cc, rwnd_limited_pct=limited.get("rwnd"),
        sndbuf_limited_pct=limited.get("sndbuf"), segs_out=num("segs_out"), segs_in=num("segs_in"),
    )


def parse_ss(text: str) -> tuple[Connection, ...]:
    """``ss -tin`` output (with or without its header) -> the established connections.

    A connection is a line ``ESTAB recvq sendq local peer`` followed by an indented line of details;
    unparsable lines are skipped.
    """
    out: list[Connection] = []
    pending: tuple[str, str] | None = None
    for line in text.splitlines():
        if not line.strip():
            continue
        if line[0] in " \t":
            if pending is not None:
                out.append(_details(*pending, line.split()))
                pending = None
            continue
        f = line.split()
        pending = (f[3], f[4]) if len(f) >= 5 and f[0] == "ESTAB" else None
    return tuple(out)
