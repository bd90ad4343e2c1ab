"""Workload drivers: what a trial runs and measures.

Layout:

* :mod:`~collectors.workloads.base`: the :class:`~collectors.workloads.base.Workload`
  protocol (optional members with their defaults), ``Measurement``, ``COMMON_METRICS``.
* :mod:`~collectors.workloads.registry`: ``build_workload`` (spec section ->
  workload), ``workload_metric_docs``, the kind -> class tables ``WORKLOADS`` /
  ``TOOL_WORKLOADS``.
* :mod:`~collectors.workloads.process`: the one process runner (``run_bounded``,
  ``stop_process``, ``tail``) every workload runs its children with.
* :mod:`~collectors.workloads.oltp`: the built-in OLTP service (``OltpService``,
  ``OltpWorkload``); its server :mod:`~collectors.workloads.oltp_server` and load
  generator :mod:`~collectors.workloads.loadgen` are ``python -m`` entry points.
* :mod:`collectors.workloads.tools`: one module per real tool (adapter + workload).
* Passive observation lives in :mod:`collectors.passive.target`.

Submodules are imported explicitly (``from collectors.workloads.oltp import
OltpService``); this package imports nothing at import time so that the server
and load-generator entry points (``python -m collectors.workloads.oltp_server``,
``python -m collectors.workloads.loadgen``, ``python -m
collectors.workloads.tools.http_server``) start fast, without pandas.
"""
