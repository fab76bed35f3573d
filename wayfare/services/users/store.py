"""Reads and writes of accounts and refresh tokens, inside the caller's transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.kit.db import utcnow
from wayfare.services.users.domain import EmailTaken
from wayfare.services.users.models import refresh_tokens, users

__all__ = [
    "Account",
    "RefreshRecord",
    "account_by_email",
    "account_by_id",
    "add_account",
    "add_refresh_token",
    "count_accounts",
    "mark_rotated",
    "refresh_record",
    "rename_account",
    "revoke_family",
]


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    name: str
    role: str
    password_hash: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: RowMapping) -> Account:
        return cls(**{k: row[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class RefreshRecord:
    id: str
    family_id: str
    user_id: str
    rotated_at: datetime | None
    revoked_at: datetime | None
    expires_at: datetime


async def add_account(session: AsyncSession, account: Account) -> None:
    """Raises `EmailTaken`; the caller's transaction is then unusable and must roll back."""
    try:
        await session.execute(users.insert().values(**account.__dict__))
    except IntegrityError as exc:
        raise EmailTaken(account.email) from exc


async def account_by_email(session: AsyncSession, email: str) -> Account | None:
    row = (await session.execute(select(users).where(users.c.email == email))).mappings().first()
    return None if row is None else Account.from_row(row)


async def account_by_id(session: AsyncSession, user_id: str) -> Account | None:
    row = (await session.execute(select(users).where(users.c.id == user_id))).mappings().first()
    return None if row is None else Account.from_row(row)


async def count_accounts(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(users))).scalar_one())


async def rename_account(session: AsyncSession, user_id: str, name: str) -> None:
    await session.execute(
        update(users).where(users.c.id == user_id).values(name=name, updated_at=utcnow())
    )


async def add_refresh_token(
    session: AsyncSession,
    *,
    jti: str,
    family_id: str,
    user_id: str,
    token_hash: str,
    expires_at: datetime,
) -> None:
    await session.execute(
        refresh_tokens.insert().values(
            id=jti,
            family_id=family_id,
            user_id=user_id,
            token_hash=token_hash,
            expires_at=expires_at,
            created_at=utcnow(),
        )
    )


async def refresh_record(session: AsyncSession, token_hash: str) -> RefreshRecord | None:
    row = (
        (
            await session.execute(
                select(
                    refresh_tokens.c.id,
                    refresh_tokens.c.family_id,
                    refresh_tokens.c.user_id,
                    refresh_tokens.c.rotated_at,
                    refresh_tokens.c.revoked_at,
                    refresh_tokens.c.expires_at,
                ).where(refresh_tokens.c.token_hash == token_hash)
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else RefreshRecord(**row)


async def mark_rotated(session: AsyncSession, token_id: str) -> bool:
    """Claim the token for one rotation; False when it was already used or revoked."""
    result = await session.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.id == token_id,
            refresh_tokens.c.rotated_at.is_(None),
            refresh_tokens.c.revoked_at.is_(None),
        )
        .values(rotated_at=utcnow())
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def revoke_family(session: AsyncSession, family_id: str) -> None:
    await session.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
