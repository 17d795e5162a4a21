"""Alembic's entry point: migrations run on the connection the metadata store hands over."""

from __future__ import annotations

from alembic import context

from stackmagic.stores.models import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite alters tables by copying them
)
with context.begin_transaction():
    context.run_migrations()
