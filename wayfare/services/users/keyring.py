"""The users service's signing keys: one active, retired ones kept while tokens live.

A retired key stays in the JWKS for one access-token lifetime (its access tokens can
still be presented) and in the database for one refresh-token lifetime (refresh tokens
it signed can still be redeemed); after that it is deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.kit.auth import SigningKey, generate_signing_key
from wayfare.kit.db import utcnow
from wayfare.services.users.models import signing_keys

__all__ = ["active_key", "ensure_active_key", "find_key", "published_jwks", "rotate"]


async def active_key(session: AsyncSession) -> SigningKey:
    row = (
        await session.execute(
            select(signing_keys.c.kid, signing_keys.c.private_pem)
            .where(signing_keys.c.retired_at.is_(None))
            .order_by(signing_keys.c.created_at.desc())
            .limit(1)
        )
    ).first()
    if row is None:
        raise LookupError("no active signing key")
    return SigningKey.from_pem(row.kid, row.private_pem)


async def ensure_active_key(session: AsyncSession) -> str:
    """Make a key on first start; returns the active kid."""
    try:
        return (await active_key(session)).kid
    except LookupError:
        key = generate_signing_key()
        await session.execute(
            signing_keys.insert().values(
                kid=key.kid, private_pem=key.private_pem(), created_at=utcnow()
            )
        )
        return key.kid


async def rotate(session: AsyncSession, *, refresh_ttl: int) -> tuple[str, list[str]]:
    """Add a new active key, retire the old one; returns (new kid, deleted kids)."""
    now = utcnow()
    await session.execute(
        update(signing_keys).where(signing_keys.c.retired_at.is_(None)).values(retired_at=now)
    )
    key = generate_signing_key()
    await session.execute(
        signing_keys.insert().values(kid=key.kid, private_pem=key.private_pem(), created_at=now)
    )
    expired = list(
        (
            await session.execute(
                delete(signing_keys)
                .where(signing_keys.c.retired_at < now - timedelta(seconds=refresh_ttl))
                .returning(signing_keys.c.kid)
            )
        ).scalars()
    )
    return key.kid, expired


def _published_since(access_ttl: int) -> datetime:
    return utcnow() - timedelta(seconds=access_ttl)


async def published_jwks(session: AsyncSession, *, access_ttl: int) -> list[dict[str, Any]]:
    rows = await session.execute(
        select(signing_keys.c.kid, signing_keys.c.private_pem)
        .where(
            or_(
                signing_keys.c.retired_at.is_(None),
                signing_keys.c.retired_at > _published_since(access_ttl),
            )
        )
        .order_by(signing_keys.c.created_at.desc())
    )
    return [SigningKey.from_pem(r.kid, r.private_pem).public_jwk for r in rows]


async def find_key(
    session: AsyncSession, kid: str, *, published_within: int | None
) -> jwt.PyJWK | None:
    """The key for `kid`; with `published_within`, only if it is still in the JWKS."""
    query = select(signing_keys.c.kid, signing_keys.c.private_pem).where(signing_keys.c.kid == kid)
    if published_within is not None:
        query = query.where(
            or_(
                signing_keys.c.retired_at.is_(None),
                signing_keys.c.retired_at > _published_since(published_within),
            )
        )
    row = (await session.execute(query)).first()
    if row is None:
        return None
    return jwt.PyJWK(SigningKey.from_pem(row.kid, row.private_pem).public_jwk)
