"""Use cases of the users service: plain async functions taking their adapters."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from wayfare.kit.auth import ACCESS_TYP, REFRESH_TYP, InvalidToken, TokenSigner, TokenVerifier
from wayfare.kit.bus import Event
from wayfare.kit.db import UnitOfWork, utcnow
from wayfare.kit.outbox import record
from wayfare.services.users import keyring, store
from wayfare.services.users.domain import (
    InvalidCredentials,
    InvalidRefreshToken,
    UserNotFound,
    can_view,
    hash_refresh_token,
)
from wayfare.services.users.passwords import Passwords

__all__ = [
    "Accounts",
    "TokenPair",
    "ensure_admin",
    "get_user",
    "login",
    "logout",
    "refresh",
    "register",
    "rename",
]


@dataclass(frozen=True)
class Accounts:
    """What the use cases need, wired once by the bootstrap."""

    uow: UnitOfWork
    passwords: Passwords
    signer: TokenSigner
    refresh_verifier: TokenVerifier
    access_ttl: int
    refresh_ttl: int


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret


async def register(ctx: Accounts, *, email: str, password: str, name: str) -> store.Account:
    now = utcnow()
    account = store.Account(
        id=str(uuid.uuid4()),
        email=email.lower(),
        name=name,
        role="traveller",
        password_hash=await ctx.passwords.hash(password),
        created_at=now,
        updated_at=now,
    )
    async with ctx.uow.begin() as session:
        await store.add_account(session, account)
        await record(session, _user_event("user.created", account))
    return account


async def login(ctx: Accounts, *, email: str, password: str) -> TokenPair:
    async with ctx.uow.begin() as session:
        account = await store.account_by_email(session, email.lower())
    # Verified even when the account is missing, so the answer takes the same time.
    ok = await ctx.passwords.verify(account.password_hash if account else None, password)
    if account is None or not ok:
        raise InvalidCredentials
    return await _issue(ctx, account, family_id=str(uuid.uuid4()))


async def refresh(ctx: Accounts, *, refresh_token: str) -> TokenPair:
    record = await _redeemable(ctx, refresh_token)
    async with ctx.uow.begin() as session:
        claimed = await store.mark_rotated(session, record.id)
        if not claimed:
            # A rotated token presented again means it leaked: end the whole session.
            await store.revoke_family(session, record.family_id)
    if not claimed:
        raise InvalidRefreshToken("refresh token reused; its family is revoked")
    async with ctx.uow.begin() as session:
        account = await store.account_by_id(session, record.user_id)
    if account is None:
        raise InvalidRefreshToken("account gone")
    return await _issue(ctx, account, family_id=record.family_id)


async def logout(ctx: Accounts, *, refresh_token: str) -> None:
    record = await _redeemable(ctx, refresh_token, allow_used=True)
    async with ctx.uow.begin() as session:
        await store.revoke_family(session, record.family_id)


async def get_user(
    ctx: Accounts, *, user_id: str, viewer_id: str, viewer_is_admin: bool
) -> store.Account:
    # Someone else's account answers "not found", so ids cannot be probed.
    if not can_view(viewer_id, viewer_is_admin, user_id):
        raise UserNotFound(user_id)
    async with ctx.uow.begin() as session:
        account = await store.account_by_id(session, user_id)
    if account is None:
        raise UserNotFound(user_id)
    return account


async def rename(ctx: Accounts, *, user_id: str, name: str) -> store.Account:
    async with ctx.uow.begin() as session:
        await store.rename_account(session, user_id, name)
        account = await store.account_by_id(session, user_id)
        if account is None:
            raise UserNotFound(user_id)
        await record(session, _user_event("user.updated", account))
    return account


async def ensure_admin(ctx: Accounts, *, email: str, password: str | None) -> str | None:
    """Create the admin account once; returns a generated password if one was made."""
    async with ctx.uow.begin() as session:
        await keyring.ensure_active_key(session)
        if await store.account_by_email(session, email.lower()) is not None:
            return None
    generated = None
    if password is None:
        generated = password = secrets.token_urlsafe(18)
    now = utcnow()
    account = store.Account(
        id=str(uuid.uuid4()),
        email=email.lower(),
        name="Administrator",
        role="admin",
        password_hash=await ctx.passwords.hash(password),
        created_at=now,
        updated_at=now,
    )
    async with ctx.uow.begin() as session:
        await store.add_account(session, account)
        await record(session, _user_event("user.created", account))
    return generated


def _user_event(type_: str, account: store.Account) -> Event:
    return Event.new(
        type=type_,
        source="users",
        subject=account.id,
        data={"id": account.id, "email": account.email, "name": account.name, "role": account.role},
    )


async def _redeemable(
    ctx: Accounts, refresh_token: str, *, allow_used: bool = False
) -> store.RefreshRecord:
    try:
        await ctx.refresh_verifier.verify_claims(refresh_token)
    except InvalidToken as exc:
        raise InvalidRefreshToken(str(exc)) from exc
    async with ctx.uow.begin() as session:
        record = await store.refresh_record(session, hash_refresh_token(refresh_token))
    if record is None or record.revoked_at is not None:
        raise InvalidRefreshToken("unknown or revoked refresh token")
    if record.expires_at <= datetime.now(UTC):
        raise InvalidRefreshToken("expired refresh token")
    if record.rotated_at is not None and not allow_used:
        async with ctx.uow.begin() as session:
            await store.revoke_family(session, record.family_id)
        raise InvalidRefreshToken("refresh token reused; its family is revoked")
    return record


async def _issue(ctx: Accounts, account: store.Account, *, family_id: str) -> TokenPair:
    async with ctx.uow.begin() as session:
        key = await keyring.active_key(session)
        access, _ = ctx.signer.sign(
            key,
            typ=ACCESS_TYP,
            subject=account.id,
            ttl=ctx.access_ttl,
            claims={"role": account.role},
        )
        refresh_token, claims = ctx.signer.sign(
            key,
            typ=REFRESH_TYP,
            subject=account.id,
            ttl=ctx.refresh_ttl,
            claims={"fam": family_id},
        )
        await store.add_refresh_token(
            session,
            jti=claims["jti"],
            family_id=family_id,
            user_id=account.id,
            token_hash=hash_refresh_token(refresh_token),
            expires_at=datetime.fromtimestamp(claims["exp"], UTC),
        )
    return TokenPair(access_token=access, refresh_token=refresh_token, expires_in=ctx.access_ttl)
