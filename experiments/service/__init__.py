"""The novatune HTTP service (FastAPI): ``create_app()`` builds one app; ``novatune serve`` runs it.

- :mod:`.app`: the factory, the lifespan (reconcile, watcher, shutdown)
- :mod:`.routers`: one router per resource, each with its prefix (``/studies``, ``/tuning``, ``/knobs``,
  ``/settings``, ``/healthz``, ``/metrics``)
- :mod:`.deps`: what a route may ask for, as ``Annotated`` aliases (manager, index, settings, auth, ...)
- :mod:`.guard`: the outermost middleware: Host allow-list, body size and deadline, the token checked
  from the head before any body is read
- :mod:`.auth`: the bearer token: which request needs it, the one comparison, failures logged and limited
- :mod:`.serving`: how ``serve``/``ui`` are exposed (loopback unless TLS or ``--insecure-bind``) and the
  connection protocol's limits (head size and deadline, open connections)
- :mod:`.docs`: ``/docs`` and ``/redoc`` with local assets
- :mod:`.errors`: one handler for the ``NovatuneError`` root
- :mod:`.views`: the cached study summaries; :mod:`.exposition`: the Prometheus registry of ``/metrics``
"""

from __future__ import annotations

from experiments.service.app import create_app, package_version

__all__ = ["create_app", "package_version"]
