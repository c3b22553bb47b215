from alembic import context
from sqlalchemy import pool
from sqlmodel import SQLModel

import app.models  # noqa: F401 - registers every table
from app.settings import load_settings

config = context.config
url = config.get_main_option("sqlalchemy.url") or load_settings().database_url
target_metadata = SQLModel.metadata


def run_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    from app.db import make_engine

    engine = make_engine(url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        if connection.dialect.name == "sqlite":
            # SQLite alters a table by copying it and dropping the old one; with
            # foreign keys on, dropping a referenced table fails. Off for the
            # migration (the pragma is ignored inside a transaction, so it is
            # set on the raw connection before SQLAlchemy begins one).
            connection.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=connection.dialect.name == "sqlite"
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
