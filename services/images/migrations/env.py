"""Alembic environment of the image service: run programmatically with a connection
passed in ``config.attributes["connection"]`` (see gemhub.services.common.db)."""

from alembic import context

from gemhub.services.images.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
