"""The unit of work: one transaction that commits everything or nothing."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["CommitHook", "UnitOfWork"]

# Called with the session's `info` after each successful commit (e.g. to wake the outbox relay).
CommitHook = Callable[[dict[str, Any]], None]


class UnitOfWork:
    """`async with uow.begin() as session:` commits on success and rolls back on error."""

    def __init__(self, engine: AsyncEngine, *, on_commit: CommitHook | None = None) -> None:
        self.engine = engine
        self.on_commit = on_commit
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def begin(self) -> _Transaction:
        return _Transaction(self._sessions(), self.on_commit)


class _Transaction:
    def __init__(self, session: AsyncSession, on_commit: CommitHook | None) -> None:
        self.session = session
        self.on_commit = on_commit

    async def __aenter__(self) -> AsyncSession:
        return self.session

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await self.session.commit()
                if self.on_commit is not None:
                    self.on_commit(self.session.info)
            else:
                await self.session.rollback()
        finally:
            await self.session.close()
