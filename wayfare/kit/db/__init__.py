"""Databases: engines with pool settings, the unit of work, and Alembic migrations."""

from wayfare.kit.db.engine import create_engine, ping
from wayfare.kit.db.migrations import run_env, upgrade
from wayfare.kit.db.types import UtcDateTime, utcnow
from wayfare.kit.db.uow import UnitOfWork

__all__ = [
    "UnitOfWork",
    "UtcDateTime",
    "create_engine",
    "ping",
    "run_env",
    "upgrade",
    "utcnow",
]
