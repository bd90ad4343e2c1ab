"""Passive targets: measure a service that is already running, without driving load.

* :mod:`collectors.passive.http_probe` — latency percentiles of an HTTP endpoint.
* :mod:`collectors.passive.scrape` — a target's own Prometheus metrics.
"""
