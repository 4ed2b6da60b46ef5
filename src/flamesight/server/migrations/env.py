"""Alembic environment: runs on the connection `flamesight.server.database.migrate` hands in.

The server applies migrations itself at start (an async engine's connection,
run synchronously through `run_sync`), so there is no alembic.ini and no
offline mode.
"""

from __future__ import annotations

from alembic import context

from flamesight.server.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "flamesight migrations run through flamesight.server.database.migrate, not the alembic CLI"
    )
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
