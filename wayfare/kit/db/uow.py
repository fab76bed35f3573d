"""The unit of work: one transaction that commits everything or nothing."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

__all__ = ["UnitOfWork"]


class UnitOfWork:
    """`async with uow.begin() as session:` commits on success and rolls back on error."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    def begin(self) -> _Transaction:
        return _Transaction(self._sessions())

    def session(self) -> AsyncSession:
        """A session for reads, without an explicit transaction boundary."""
        return self._sessions()


class _Transaction:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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
            else:
                await self.session.rollback()
        finally:
            await self.session.close()
