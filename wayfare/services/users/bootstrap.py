"""The one place the users service's adapters are chosen and wired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import jwt
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from wayfare.kit.auth import REFRESH_TYP, KeyLookup, TokenSigner, TokenVerifier
from wayfare.kit.bus import EventBus
from wayfare.kit.db import UnitOfWork, ping
from wayfare.kit.observability import get_logger
from wayfare.kit.resources import migrate_service, open_resources, service_engine
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
    return service_engine(settings, NAME)


def _accounts(settings: Settings, uow: UnitOfWork) -> Accounts:

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
    await migrate_service(settings, NAME, MIGRATIONS)


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
            _accounts(settings, UnitOfWork(engine)), email=settings.admin_email, password=password
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
        async with open_resources(settings, NAME, bus=bus) as resources:
            accounts = _accounts(settings, resources.uow)
            async with accounts.uow.begin() as session:
                await keyring.ensure_active_key(session)
            app.state.engine = resources.engine
            app.state.relay = resources.relay
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
