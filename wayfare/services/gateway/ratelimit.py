"""Rate limits with the `limits` library: in memory embedded, in Redis when shared.

With Redis every gateway replica counts against the same budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import FixedWindowRateLimiter
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from wayfare.kit.observability import get_logger

__all__ = ["Decision", "RateLimits"]

_log = get_logger("wayfare.gateway.ratelimit")


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    remaining: int
    reset_after: int
    window: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"ratelimit-policy", f"{self.limit};w={self.window}".encode()),
            (
                b"ratelimit",
                f"limit={self.limit}, remaining={self.remaining}, "
                f"reset={self.reset_after}".encode(),
            ),
        ]
        if not self.allowed:
            headers.append((b"retry-after", str(self.reset_after).encode()))
        return headers


class RateLimits:
    def __init__(self, *, default: str, auth: str, redis_url: str | None = None) -> None:
        self._pool: ConnectionPool | None = None
        self.storage: Storage = MemoryStorage()
        if redis_url:
            # Our own pool, so that closing the gateway closes its connections.
            self._pool = ConnectionPool.from_url(redis_url)
            self.storage = RedisStorage(
                _async_uri(redis_url),
                implementation="redispy",
                connection_pool=self._pool,  # type: ignore[arg-type]
            )
        self._limiter = FixedWindowRateLimiter(self.storage)
        self.unavailable = 0
        self.default: RateLimitItem = parse(default)
        self.auth: RateLimitItem = parse(auth)

    async def hit(self, item: RateLimitItem, key: str) -> Decision | None:
        """None when allowed; a refusal with its numbers otherwise.

        When the counters' store is unreachable the request is let through (and counted
        in `unavailable`): an outage of Redis must not take the whole API down with it.
        """
        try:
            if await self._limiter.hit(item, "gw", key):
                return None
        except (RedisError, OSError) as exc:
            self.unavailable += 1
            _log.warning(
                "rate-limit store unreachable; letting the request through", error=repr(exc)
            )
            return None
        stats = await self._limiter.get_window_stats(item, "gw", key)
        return Decision(
            allowed=False,
            limit=item.amount,
            remaining=stats.remaining,
            reset_after=max(1, int(stats.reset_time - time.time() + 0.999)),
            window=item.get_expiry(),
        )

    async def reset(self) -> None:
        await self.storage.reset()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.disconnect()


def _async_uri(url: str) -> str:
    return url if url.startswith("async+") else f"async+{url}"
