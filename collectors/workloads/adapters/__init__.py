"""Adapters for real benchmark tools: an argument list to run and a pure output parser.

Each adapter is a frozen dataclass with ``command() -> list[str]`` (bounded in
time and count, aimed at 127.0.0.1 by default) and ``parse(text) ->
AdapterResult``. Parsers never run anything; :func:`run_adapter` runs the
command with a hard timeout and parses what it printed.

Tools and the Debian packages that provide them: fio (``fio``), pgbench
(``postgresql-contrib`` / ``postgresql-client``; the server test also needs
``postgresql``), redis-benchmark (``redis-tools``; server ``redis-server``), wrk
(``wrk``), iperf3 (``iperf3``), stress-ng (``stress-ng``).

Submodules are imported lazily by :func:`get_adapter`; importing this package
does no work.
"""

from __future__ import annotations

from collectors.workloads.adapters._base import (
    DEBIAN_PACKAGES,
    MAX_DURATION_S,
    AdapterError,
    AdapterResult,
    run_adapter,
)

__all__ = [
    "ADAPTERS",
    "DEBIAN_PACKAGES",
    "MAX_DURATION_S",
    "AdapterError",
    "AdapterResult",
    "get_adapter",
    "run_adapter",
]

# tool name -> (module, class name); resolved on demand
ADAPTERS: dict[str, tuple[str, str]] = {
    "fio": ("collectors.workloads.adapters.fio", "FioAdapter"),
    "pgbench": ("collectors.workloads.adapters.pgbench", "PgbenchAdapter"),
    "redis-benchmark": ("collectors.workloads.adapters.redis_benchmark", "RedisBenchmarkAdapter"),
    "wrk": ("collectors.workloads.adapters.wrk", "WrkAdapter"),
    "iperf3": ("collectors.workloads.adapters.iperf3", "Iperf3Adapter"),
    "stress-ng": ("collectors.workloads.adapters.stress_ng", "StressNgAdapter"),
}


def get_adapter(tool: str) -> type:
    """The adapter class for ``tool`` (a key of :data:`ADAPTERS`).

    Raises:
        AdapterError: unknown tool (the message lists the known ones).
    """
    import importlib

    if tool not in ADAPTERS:
        raise AdapterError(tool, f"unknown tool; known: {sorted(ADAPTERS)}")
    module, cls = ADAPTERS[tool]
    return getattr(importlib.import_module(module), cls)
