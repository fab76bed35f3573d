"""Token verification for services that verify but do not sign: keys from the users JWKS."""

from __future__ import annotations

import aiohttp

from wayfare.kit.auth.jwks import JwksCache
from wayfare.kit.auth.tokens import TokenVerifier
from wayfare.kit.settings import Settings

__all__ = ["jwks_url", "remote_verifier"]


def jwks_url(settings: Settings) -> str:
    if settings.jwks_url:
        return settings.jwks_url
    users = settings.upstreams.get("users")
    if not users:
        raise ValueError("set WAYFARE_JWKS_URL (or a users upstream) to verify tokens")
    return f"{users[0].rstrip('/')}/.well-known/jwks.json"


def remote_verifier(settings: Settings, session: aiohttp.ClientSession) -> TokenVerifier:
    verifier: TokenVerifier

    def forget() -> None:
        verifier.forget()

    keys = JwksCache(
        jwks_url(settings),
        session,
        ttl=settings.jwks_cache_ttl,
        min_refetch_interval=settings.jwks_min_refetch_interval,
        on_change=forget,
    )
    verifier = TokenVerifier(keys.get, issuer=settings.issuer, audience=settings.audience)
    return verifier
