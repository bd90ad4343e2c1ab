"""Real benchmark tools, one module per tool: its adapter (command + parser) next to its workload.

* :mod:`~collectors.workloads.tools.fio`, :mod:`~collectors.workloads.tools.pgbench`,
  :mod:`~collectors.workloads.tools.redis_benchmark`, :mod:`~collectors.workloads.tools.wrk`,
  :mod:`~collectors.workloads.tools.iperf3`, :mod:`~collectors.workloads.tools.stress_ng`:
  ``<Tool>Adapter`` (``command()`` bounded in time and count, aimed at
  127.0.0.1; ``parse(text)`` pure, tested on recorded outputs in
  ``tests/collectors/data/tools``), ``parse_<tool>`` and ``<Tool>Workload``
  (the :class:`~collectors.workloads.base.Workload` with the server it needs:
  pgbench's throwaway PostgreSQL cluster and redis-benchmark's redis-server
  live in their tool's module).
* :mod:`~collectors.workloads.tools.adapter`: what every adapter shares (the
  result, the error, bounds, :func:`~collectors.workloads.tools.adapter.run_adapter`
  on top of the one process runner :mod:`collectors.workloads.process`,
  ``DEBIAN_PACKAGES``, the adapter table ``ADAPTERS`` / ``get_adapter``).
* :mod:`~collectors.workloads.tools.workload`: what every tool workload shares
  (``ToolWorkload``, ``HolderWorkload``).
* :mod:`~collectors.workloads.tools.private`: who a server runs as (never
  root) and its private directory.
* :mod:`~collectors.workloads.tools.http_server`: the static HTTP server wrk
  measures (a ``python -m`` entry point, standard library only).

The tool name -> workload class table is
:data:`collectors.workloads.registry.TOOL_WORKLOADS`. This package imports
nothing at import time, so that ``python -m collectors.workloads.tools.http_server``
starts without pandas.
"""
