"""Signing and verifying access and refresh tokens (JWT, EdDSA, with `kid` and `typ`).

Verification trusts nothing in the token's header but the `kid`: the algorithm comes
from an allow-list, the key from the JWKS, and `iss`, `aud`, `exp`, `nbf` and `typ`
are all required. Refresh tokens carry a different `typ`, so one can never pass as
an access token.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jwt

from wayfare.kit.auth.keys import ALGORITHM, SigningKey

__all__ = [
    "ACCESS_TYP",
    "REFRESH_TYP",
    "InvalidToken",
    "KeyLookup",
    "Principal",
    "TokenSigner",
    "TokenVerifier",
]

ACCESS_TYP = "at+jwt"
REFRESH_TYP = "refresh+jwt"
_REQUIRED = ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]


class InvalidToken(Exception):
    """The token must not be trusted; the message says why, for logs only."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    role: str
    token: str
    expires_at: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class TokenSigner:
    def __init__(self, *, issuer: str, audience: str) -> None:
        self.issuer = issuer
        self.audience = audience

    def sign(
        self,
        key: SigningKey,
        *,
        typ: str,
        subject: str,
        ttl: int,
        claims: dict[str, Any] | None = None,
        now: int | None = None,
    ) -> tuple[str, dict[str, Any]]:
        issued = int(time.time()) if now is None else now
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
            "jti": secrets.token_urlsafe(16),
            **(claims or {}),
        }
        token = jwt.encode(
            payload, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": typ}
        )
        return token, payload


KeyLookup = Callable[[str], Awaitable[jwt.PyJWK | None]]


class TokenVerifier:
    """Verifies tokens against keys found by `kid`; remembers recent verified tokens."""

    def __init__(
        self,
        lookup: KeyLookup,
        *,
        issuer: str,
        audience: str,
        typ: str = ACCESS_TYP,
        leeway: int = 5,
        cache_size: int = 10_000,
    ) -> None:
        self._lookup = lookup
        self.issuer = issuer
        self.audience = audience
        self.typ = typ
        self.leeway = leeway
        self._cache: dict[str, Principal] = {}
        self._cache_size = cache_size

    def forget(self) -> None:
        """Drop remembered tokens, e.g. because a key left the JWKS."""
        self._cache.clear()

    async def verify(self, token: str) -> Principal:
        cached = self._cache.get(token)
        if cached is not None:
            if cached.expires_at + self.leeway > time.time():
                return cached
            del self._cache[token]
        claims = await self.verify_claims(token)
        principal = Principal(
            user_id=str(claims["sub"]),
            role=str(claims.get("role", "traveller")),
            token=token,
            expires_at=int(claims["exp"]),
        )
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[token] = principal
        return principal

    async def verify_claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"algorithm {header.get('alg')!r} is not allowed")
        if header.get("typ") != self.typ:
            raise InvalidToken(f"token type {header.get('typ')!r} is not {self.typ!r}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("no kid")
        key = await self._lookup(kid)
        if key is None:
            raise InvalidToken(f"unknown kid {kid!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": _REQUIRED},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(str(exc)) from exc
        return claims
