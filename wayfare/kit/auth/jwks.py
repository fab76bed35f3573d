"""A JWKS fetched over HTTP and cached, for services that verify but do not sign.

Unknown `kid`s cause a refetch, but a burst of them makes a single fetch (they
share one in-flight request) and fetches are spaced by a minimum interval, so a
flood of forged kids cannot turn into a flood of requests to the users service.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt

from wayfare.kit.observability import get_logger

__all__ = ["JwksCache"]

_log = get_logger("wayfare.jwks")


class JwksCache:
    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        ttl: float = 300.0,
        min_refetch_interval: float = 5.0,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self._session = session
        self.ttl = ttl
        self.min_refetch_interval = min_refetch_interval
        self._on_change = on_change
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._inflight: asyncio.Task[None] | None = None
        self.fetches = 0

    async def get(self, kid: str) -> jwt.PyJWK | None:
        now = time.monotonic()
        age = now - self._fetched_at
        stale = age > self.ttl
        unknown = kid not in self._keys and age >= self.min_refetch_interval
        if stale or unknown:
            await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch())
        task = self._inflight
        try:
            await asyncio.shield(task)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            # Keep the keys we had: a users-service hiccup must not log everyone out.
            _log.warning("jwks fetch failed", url=self.url, error=repr(exc))
        finally:
            if self._inflight is task and task.done():
                self._inflight = None

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            async with self._session.get(self.url) as response:
                response.raise_for_status()
                document: Any = await response.json(content_type=None)
        finally:
            # Failed fetches count too, so a dead users service is not hammered.
            self._fetched_at = time.monotonic()
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            # Not a key set (an error page, a proxy's JSON): a failed fetch, not "no keys".
            raise ValueError("the JWKS document has no list of keys")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in entries:
            try:
                if not isinstance(entry, dict):
                    raise TypeError(f"a JWK is an object, not {type(entry).__name__}")
                keys[str(entry["kid"])] = jwt.PyJWK(entry)
            except (KeyError, TypeError, jwt.PyJWTError) as exc:
                _log.warning("jwks entry skipped", error=repr(exc))
        changed = keys.keys() != self._keys.keys()
        self._keys = keys
        if changed and self._on_change is not None:
            self._on_change()
