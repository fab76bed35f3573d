"""The port every cache back end implements: bytes under keys, tags, and short locks."""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

__all__ = ["CacheBackend", "CacheBackendError"]


class CacheBackendError(Exception):
    """The store could not be reached or answered with an error; callers fail open."""


class CacheBackend(Protocol):
    """A key-value store with expiry, tag sets and leased locks.

    Keys arrive fully built (prefix, version, namespace); the back end never parses them.
    Every method may raise `CacheBackendError` and nothing else for a store failure.
    """

    async def start(self) -> None:
        """Open connections; called from the service's lifespan, never at import."""

    async def close(self) -> None:
        """Release connections; the back end can be started again afterwards."""

    async def get(self, key: str) -> bytes | None:
        """The stored bytes, or None when the key is absent or expired."""

    async def set(self, key: str, value: bytes, ttl: float, tags: Collection[str] = ()) -> None:
        """Store `value` for `ttl` seconds and add `key` to each tag set in `tags`.

        A tag set lives at least as long as the longest-lived key added to it.
        """

    async def delete(self, keys: Collection[str]) -> None:
        """Remove the keys; absent keys are ignored."""

    async def invalidate_tag(self, tag: str) -> None:
        """Remove every key in the tag set `tag`, then the set itself."""

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        """Take the lock `key` for `ttl` seconds; a token to release it, or None if held."""

    async def release_lock(self, key: str, token: str) -> None:
        """Release the lock only if `token` still holds it (it may have expired meanwhile)."""
