"""The novatune HTTP service (FastAPI): ``create_app()`` builds one app; ``novatune serve`` runs it.

- :mod:`.app`: the factory, the lifespan (reconcile, watcher, shutdown)
- :mod:`.routers`: one router per resource, each with its prefix (``/studies``, ``/tuning``, ``/knobs``,
  ``/settings``, ``/healthz``, ``/metrics``)
- :mod:`.deps`: what a route may ask for, as ``Annotated`` aliases (manager, index, settings, auth, ...)
- :mod:`.auth`: the bearer token
- :mod:`.errors`: one handler for the ``NovatuneError`` root
- :mod:`.views`: the cached study summaries; :mod:`.exposition`: the Prometheus registry of ``/metrics``
"""

from __future__ import annotations

from experiments.service.app import create_app, package_version

__all__ = ["create_app", "package_version"]
