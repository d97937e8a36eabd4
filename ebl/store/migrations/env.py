"""Alembic environment: migrations run on the connection ``ebl.store.db.migrate`` hands over, in its transaction."""

from alembic import context
from sqlmodel import SQLModel

import ebl.store.tables  # noqa: F401  (registers the tables on SQLModel.metadata, for autogenerate)

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=SQLModel.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
