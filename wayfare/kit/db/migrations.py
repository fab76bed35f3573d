"""Alembic migrations, one script directory per service, applied programmatically.

Each service's `migrations/env.py` calls `run_env`; `upgrade` runs them on an async
engine. In PostgreSQL the service's schema is created first, and an advisory lock
keeps replicas that start together from migrating twice.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import MetaData, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = ["run_env", "upgrade"]


async def upgrade(engine: AsyncEngine, script_location: Path, *, schema: str | None) -> None:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql" and schema:
            await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:s))"), {"s": schema})
            await conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await conn.run_sync(_upgrade, config)


def _upgrade(connection: Connection, config: Config) -> None:
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def run_env(metadata: MetaData) -> None:
    """The body of every service's `env.py`: migrate on the connection handed in."""
    from alembic import context  # a proxy that exists only while Alembic runs env.py

    connection: Connection = context.config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
