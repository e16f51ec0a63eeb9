"""Alembic environment: always run programmatically with a connection."""

from __future__ import annotations

from alembic import context

from agentkeep.store.dialects import DIALECTS
from agentkeep.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - agentkeep always passes one
    raise RuntimeError(
        "agentkeep migrations run through `agentkeep db upgrade` or agentkeep.connect()"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
dialect = DIALECTS[connection.dialect.name]
with context.begin_transaction():
    context.run_migrations()
    dialect.verify_schema_change(connection)
