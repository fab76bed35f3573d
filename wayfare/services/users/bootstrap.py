"""The one place the users service's adapters are chosen and wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import jwt
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from wayfare.kit.auth import REFRESH_TYP, KeyLookup, TokenSigner, TokenVerifier
from wayfare.kit.bus import EventBus, bus_for
from wayfare.kit.db import UnitOfWork, create_engine, ping, upgrade
from wayfare.kit.db.uow import CommitHook
from wayfare.kit.observability import get_logger
from wayfare.kit.outbox import OutboxRelay
from wayfare.kit.service import create_service
from wayfare.kit.settings import Settings
from wayfare.services.users import keyring
from wayfare.services.users.api import router
from wayfare.services.users.handlers import Accounts, ensure_admin
from wayfare.services.users.passwords import Passwords

__all__ = ["NAME", "create_app", "migrate", "prepare", "rotate_keys"]

NAME = "users"
MIGRATIONS = Path(__file__).parent / "migrations"
_log = get_logger("wayfare.users")


def _engine(settings: Settings) -> AsyncEngine:
    return create_engine(settings.service_database_url(NAME), settings, schema=NAME)


def _accounts(
    settings: Settings, engine: AsyncEngine, *, on_commit: CommitHook | None = None
) -> Accounts:
    uow = UnitOfWork(engine, on_commit=on_commit)

    return Accounts(
        uow=uow,
        passwords=Passwords(),
        signer=TokenSigner(issuer=settings.issuer, audience=settings.audience),
        refresh_verifier=TokenVerifier(
            _key_lookup(uow, published_within=None),
            issuer=settings.issuer,
            audience=settings.audience,
            typ=REFRESH_TYP,
        ),
        access_ttl=settings.access_token_ttl,
        refresh_ttl=settings.refresh_token_ttl,
    )


def _key_lookup(uow: UnitOfWork, *, published_within: int | None) -> KeyLookup:
    async def find(kid: str) -> jwt.PyJWK | None:
        async with uow.begin() as session:
            return await keyring.find_key(session, kid, published_within=published_within)

    return find


async def migrate(settings: Settings) -> None:
    engine = _engine(settings)
    try:
        await upgrade(engine, MIGRATIONS, schema=NAME)
    finally:
        await engine.dispose()


async def prepare(settings: Settings) -> str | None:
    """Signing key and admin account; returns the admin password if one was generated."""
    engine = _engine(settings)
    try:
        password = settings.admin_password.get_secret_value() if settings.admin_password else None
        if password is None and not settings.embedded:
            _log.warning("WAYFARE_ADMIN_PASSWORD unset: no admin account is created")
            async with UnitOfWork(engine).begin() as session:
                await keyring.ensure_active_key(session)
            return None
        return await ensure_admin(
            _accounts(settings, engine), email=settings.admin_email, password=password
        )
    finally:
        await engine.dispose()


async def rotate_keys(settings: Settings) -> tuple[str, list[str]]:
    engine = _engine(settings)
    try:
        async with UnitOfWork(engine).begin() as session:
            return await keyring.rotate(session, refresh_ttl=settings.refresh_token_ttl)
    finally:
        await engine.dispose()


def create_app(settings: Settings, *, bus: EventBus | None = None) -> FastAPI:
    """The users service; `bus` is shared when several services run in one process."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = _engine(settings)
        async with AsyncExitStack() as stack:
            stack.push_async_callback(engine.dispose)
            events = bus
            if events is None:
                events = bus_for(settings.broker_url)
                await events.start()
                stack.push_async_callback(events.close)
            relay = OutboxRelay(engine, events)
            accounts = _accounts(settings, engine, on_commit=relay.after_commit)
            async with accounts.uow.begin() as session:
                await keyring.ensure_active_key(session)
            await relay.start()
            stack.push_async_callback(relay.close)
            app.state.engine = engine
            app.state.relay = relay
            app.state.accounts = accounts
            app.state.verifier = TokenVerifier(
                _key_lookup(accounts.uow, published_within=settings.access_token_ttl),
                issuer=settings.issuer,
                audience=settings.audience,
            )
            yield

    async def database(app: FastAPI) -> None:
        await ping(app.state.engine)

    return create_service(
        NAME,
        routers=[router],
        lifespan=lifespan,
        readiness=[database],
        max_body_bytes=settings.max_body_bytes,
    )
