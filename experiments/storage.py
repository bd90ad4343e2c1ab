"""Where studies are stored: the data directory's SQLite file, or a shared database for a fleet.

``NOVATUNE_STORAGE`` (or ``novatune --storage URL ...``, which sets it for the command and every process
it starts) names an SQLAlchemy URL for Optuna's RDB storage: ``postgresql://user:pass@host:5432/db``
(taken as ``postgresql+psycopg://``, the driver novatune ships) or ``sqlite:////abs/path.db``. Unset, studies
live in ``optuna.db`` of the data directory, as always. Every other file (journal, runs, artifacts) stays in
the data directory: the journal belongs to the host whose knobs it restores.

A URL is checked before anything uses it (:func:`check_storage`), and only ever shown with its password
hidden (:func:`redact`).
"""

from __future__ import annotations

import os

from collectors.errors import NovatuneError

__all__ = ["ENV", "StorageError", "check_storage", "redact", "storage_from_env"]

ENV = "NOVATUNE_STORAGE"

#: the schemes a storage URL may use, and the SQLAlchemy driver each becomes
_DRIVERS = {"postgresql": "postgresql+psycopg", "postgresql+psycopg": "postgresql+psycopg",
            "postgres": "postgresql+psycopg", "sqlite": "sqlite"}


class StorageError(NovatuneError, ValueError):
    """A storage URL novatune cannot use (exit 2, HTTP 422)."""

    exit_code = 2
    http_status = 422


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (what any message may show)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<a URL that does not parse>"


def check_storage(url: str) -> str:
    """The SQLAlchemy URL for ``url`` (``postgresql://`` gets the psycopg driver), checked.

    Raises:
        StorageError: not a URL, a scheme other than ``postgresql://`` or ``sqlite:///``, PostgreSQL without a
            host (or ``?host=/SOCKET/DIR``) or a database, SQLite in memory or at a relative path.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    allowed = "allowed: postgresql://USER:PASSWORD@HOST:PORT/DATABASE or sqlite:////ABSOLUTE/PATH.db"
    try:
        parsed = make_url(url.strip())
    except (ArgumentError, ValueError):
        raise StorageError(f"storage {redact(url)!s} is not a database URL; {allowed}") from None
    driver = _DRIVERS.get(parsed.drivername)
    if driver is None:
        raise StorageError(f"storage scheme {parsed.drivername!r} is not supported; {allowed}")
    parsed = parsed.set(drivername=driver)
    if driver == "sqlite":
        if not parsed.database or parsed.database == ":memory:" or not os.path.isabs(parsed.database):
            raise StorageError(f"storage {redact(url)} needs an absolute file path (a study must outlive the "
                               f"process); {allowed}")
    elif not (parsed.host or _socket_dir(parsed.query.get("host"))) or not parsed.database:
        raise StorageError(f"storage {redact(url)} names no host or no database; {allowed} (a local server's "
                           f"socket: postgresql://USER:PASSWORD@/DATABASE?host=/ABSOLUTE/SOCKET/DIR)")
    return parsed.render_as_string(hide_password=False)


def _socket_dir(host: object) -> bool:
    """``?host=/run/postgresql``: libpq's way to name a Unix socket's directory (an absolute path)."""
    return isinstance(host, str) and os.path.isabs(host)


def storage_from_env() -> str | None:
    """The checked URL of ``$NOVATUNE_STORAGE``, or None when it is unset or empty.

    Raises:
        StorageError: it is set to a URL :func:`check_storage` refuses.
    """
    url = os.environ.get(ENV, "").strip()
    return check_storage(url) if url else None
