"""alembic's environment for novatune's own tables in the study database (run by
:func:`experiments.fleet.hosts.migrate`, never by the ``alembic`` command line).

The caller hands over an open connection inside a transaction (``config.attributes["connection"]``).
novatune's revisions are recorded in a version table of their own, :data:`VERSION_TABLE`: Optuna's
``alembic_version`` lives in the same database and is never read or written here. On PostgreSQL a
transaction-level advisory lock serialises agents that start at the same moment: the second waits, then
finds the schema at head and does nothing.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from experiments.fleet.hosts import MIGRATION_LOCK, VERSION_TABLE


def _run() -> None:
    if context.is_offline_mode():
        raise RuntimeError("novatune's migrations run online only, on a connection the registry opens")
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, version_table=VERSION_TABLE, target_metadata=None)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        # what was there before (under the lock): the caller reports the revisions this run applied
        context.config.attributes["revision_before"] = context.get_context().get_current_revision()
        context.run_migrations()


_run()
