"""Workload drivers: what a trial runs and measures.

Submodules are imported explicitly (``from collectors.workloads.oltp import
OltpWorkload``); this package imports nothing at import time so that the server
and load-generator entry points (``python -m collectors.workloads.oltp_server``,
``python -m collectors.workloads.loadgen``) start fast, without pandas.
"""
