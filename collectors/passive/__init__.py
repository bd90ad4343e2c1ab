"""Passive targets: measure a service that is already running, without driving load.

* :mod:`collectors.passive.http_probe` — latency percentiles of an HTTP endpoint.
* :mod:`collectors.passive.scrape` — a target's own Prometheus metrics.
* :mod:`collectors.passive.target` — :class:`PassiveWorkload`: pids or a cgroup,
  a probe and a scrape together, as a study's workload (``kind: passive``).
* :mod:`collectors.passive.window` — what one passive window is reduced with
  (target columns and rows, the probe thread, probe and scrape metrics).
"""
