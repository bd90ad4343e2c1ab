"""The novatune HTTP service (FastAPI): ``create_app()`` builds one app; ``novatune serve`` runs it."""

from experiments.service.app import create_app, package_version

__all__ = ["create_app", "package_version"]
