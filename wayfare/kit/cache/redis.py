"""The Redis back end of distributed mode, shared by every replica of a service."""

from __future__ import annotations

import math
import secrets
from collections.abc import Collection, Iterator
from contextlib import contextmanager

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from wayfare.kit.cache.port import CacheBackendError

__all__ = ["RedisBackend"]

# One round trip, and atomic, so a concurrent invalidation never sees a key without its tags.
_SET_WITH_TAGS = """
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], KEYS[1])
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 1
"""

# Atomic so that a key tagged while we invalidate is not dropped from a set we then delete.
# The members are not declared in KEYS: fine on one Redis, not on Redis Cluster.
_INVALIDATE_TAG = """
local members = redis.call('SMEMBERS', KEYS[1])
for i = 1, #members, 500 do
  redis.call('UNLINK', unpack(members, i, math.min(i + 499, #members)))
end
redis.call('DEL', KEYS[1])
return #members
"""

# Compare-and-delete: a holder whose lease expired must not free the next holder's lock.
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _milliseconds(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


@contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except (RedisError, OSError) as exc:  # OSError covers TimeoutError
        raise CacheBackendError(f"redis: {exc!r}") from exc


class RedisBackend:
    """A pooled `redis.asyncio` client with short timeouts, so an outage costs little."""

    def __init__(
        self,
        url: str,
        *,
        socket_timeout: float = 0.25,
        max_connections: int = 32,
        pool_timeout: float = 1.0,
    ) -> None:
        self._url = url
        self._socket_timeout = socket_timeout
        self._max_connections = max_connections
        self._pool_timeout = pool_timeout
        self._client: Redis | None = None
        self._set_with_tags: AsyncScript | None = None
        self._invalidate_tag: AsyncScript | None = None
        self._release_lock: AsyncScript | None = None

    async def start(self) -> None:
        if self._client is not None:
            return
        pool = BlockingConnectionPool.from_url(
            self._url,
            max_connections=self._max_connections,
            timeout=self._pool_timeout,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._socket_timeout,
            # One immediate retry replaces a pooled connection that died with a restarted
            # server; timeouts are not retried, since a slow cache is worth skipping.
            retry=Retry(NoBackoff(), 1, (RedisConnectionError,)),
        )
        client = Redis.from_pool(pool)
        self._set_with_tags = client.register_script(_SET_WITH_TAGS)
        self._invalidate_tag = client.register_script(_INVALIDATE_TAG)
        self._release_lock = client.register_script(_RELEASE_LOCK)
        self._client = client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    @property
    def client(self) -> Redis:
        """The underlying client, for what the port does not cover (tests, health checks)."""
        if self._client is None:
            raise RuntimeError("RedisBackend used before start()")
        return self._client

    async def get(self, key: str) -> bytes | None:
        with _store_errors():
            value = await self.client.get(key)
        return value if isinstance(value, bytes) else None

    async def set(self, key: str, value: bytes, ttl: float, tags: Collection[str] = ()) -> None:
        with _store_errors():
            if tags:
                await self._script(self._set_with_tags)(
                    keys=[key, *tags], args=[value, _milliseconds(ttl)]
                )
            else:
                await self.client.set(key, value, px=_milliseconds(ttl))

    async def delete(self, keys: Collection[str]) -> None:
        if keys:
            with _store_errors():
                await self.client.unlink(*keys)

    async def invalidate_tag(self, tag: str) -> None:
        with _store_errors():
            await self._script(self._invalidate_tag)(keys=[tag])

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        token = secrets.token_hex(16)
        with _store_errors():
            taken = await self.client.set(key, token, nx=True, px=_milliseconds(ttl))
        return token if taken else None

    async def release_lock(self, key: str, token: str) -> None:
        with _store_errors():
            await self._script(self._release_lock)(keys=[key], args=[token])

    def _script(self, script: AsyncScript | None) -> AsyncScript:
        if script is None:
            raise RuntimeError("RedisBackend used before start()")
        return script
