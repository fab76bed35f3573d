"""The cache front: versioned keys, fail-open calls to the back end, read-through loading."""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Awaitable, Callable, Collection
from functools import partial
from types import TracebackType
from typing import Any, Literal, Self, TypeVar, cast

import structlog
from prometheus_client import CollectorRegistry

from wayfare.kit.cache.codec import Decoder, decoder_for, encode
from wayfare.kit.cache.memory import MemoryBackend
from wayfare.kit.cache.metrics import CacheMetrics
from wayfare.kit.cache.port import CacheBackend, CacheBackendError
from wayfare.kit.cache.redis import RedisBackend
from wayfare.kit.cache.singleflight import SingleFlight

__all__ = ["Cache", "Namespace", "read_through"]

T = TypeVar("T")
R = TypeVar("R")
F = TypeVar("F")

log = structlog.get_logger(__name__)


class _Absent(enum.Enum):
    MISSING = enum.auto()
    UNAVAILABLE = enum.auto()


_MISSING: Literal[_Absent.MISSING] = _Absent.MISSING
_UNAVAILABLE: Literal[_Absent.UNAVAILABLE] = _Absent.UNAVAILABLE


class Cache:
    """Cache-aside over a back end, for one service.

    The back end is an optimisation, never a dependency: when it fails, reads miss, writes
    are skipped, the error counter grows, and for `retry_after` seconds the cache answers
    from loaders alone instead of paying a timeout on every call. Invalidations are always
    attempted, since skipping one leaves a stale value until its TTL.
    """

    def __init__(
        self,
        backend: CacheBackend,
        *,
        registry: CollectorRegistry,
        prefix: str = "wayfare",
        lock_ttl: float = 10.0,
        retry_after: float = 1.0,
    ) -> None:
        self.backend = backend
        self.metrics = CacheMetrics(registry)
        self.prefix = prefix
        self._lock_ttl = lock_ttl
        self._retry_after = retry_after
        self._bypass_until = 0.0
        self._flights: SingleFlight[Any] = SingleFlight()

    @classmethod
    def from_url(
        cls,
        url: str | None,
        *,
        registry: CollectorRegistry,
        prefix: str = "wayfare",
        max_entries: int = 10_000,
        lock_ttl: float = 10.0,
        retry_after: float = 1.0,
    ) -> Cache:
        """In-process when `url` is unset or `memory://`, Redis for `redis://`, `rediss://`."""
        backend: CacheBackend
        if url is None or url.startswith("memory://"):
            backend = MemoryBackend(max_entries=max_entries)
        elif url.startswith(("redis://", "rediss://", "unix://")):
            backend = RedisBackend(url)
        else:
            raise ValueError(f"no cache back end for {url.split(':', 1)[0]!r} URLs")
        return cls(
            backend, registry=registry, prefix=prefix, lock_ttl=lock_ttl, retry_after=retry_after
        )

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        await self._flights.cancel_all()
        await self.backend.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    def namespace(self, name: str, *, version: int = 1, ttl: float = 300.0) -> Namespace:
        """Keys `<prefix>:v<version>:<name>:<key>`; a new version starts from an empty cache."""
        if not name or ":" in name:
            raise ValueError(f"namespace {name!r} must be non-empty and free of ':'")
        _check_ttl(ttl)
        return Namespace(self, name, version, ttl)

    async def invalidate_tag(self, *tags: str) -> None:
        """Drop every key, in any namespace, stored with one of `tags`."""
        for tag in tags:
            action = partial(self.backend.invalidate_tag, self._tag_key(tag))
            await self._attempt("invalidate_tag", action, None, bypassable=False)

    def _tag_key(self, tag: str) -> str:
        return f"{self.prefix}:tag:{tag}"

    async def _attempt(
        self,
        operation: str,
        action: Callable[[], Awaitable[R]],
        fallback: F,
        *,
        bypassable: bool = True,
    ) -> R | F:
        if bypassable and time.monotonic() < self._bypass_until:
            return fallback
        try:
            return await action()
        except CacheBackendError as exc:
            self.metrics.errors.labels(operation).inc()
            self._bypass_until = time.monotonic() + self._retry_after
            log.warning("cache.backend_failed", operation=operation, error=str(exc))
            return fallback

    async def _read(self, ns: str, key: str, decode: Decoder) -> Any:
        raw = await self._attempt("get", partial(self.backend.get, key), None)
        if raw is None:
            return _MISSING
        try:
            return decode(raw)
        except ValueError as exc:
            # A value written by code with another shape and the same version: reload it.
            self.metrics.errors.labels("decode").inc()
            log.warning("cache.undecodable_value", namespace=ns, key=key, error=str(exc))
            return _MISSING

    async def _write(self, key: str, raw: bytes, ttl: float, tags: Collection[str]) -> None:
        tag_keys = [self._tag_key(tag) for tag in tags]
        await self._attempt("set", partial(self.backend.set, key, raw, ttl, tag_keys), None)

    async def _delete(self, keys: Collection[str]) -> None:
        await self._attempt("delete", partial(self.backend.delete, keys), None, bypassable=False)

    async def _get_or_load(
        self,
        ns: str,
        key: str,
        lock_key: str,
        load: Callable[[], Awaitable[Any]],
        decode: Decoder,
        ttl: float,
        tags: Collection[str],
    ) -> Any:
        work = partial(self._read_or_load, ns, key, lock_key, load, decode, ttl, tags)
        value, shared = await self._flights.run(key, work)
        if shared:
            self.metrics.hits.labels(ns).inc()
        return value

    async def _read_or_load(
        self,
        ns: str,
        key: str,
        lock_key: str,
        load: Callable[[], Awaitable[Any]],
        decode: Decoder,
        ttl: float,
        tags: Collection[str],
    ) -> Any:
        value = await self._read(ns, key, decode)
        if value is not _MISSING:
            self.metrics.hits.labels(ns).inc()
            return value
        # Another replica may be loading the same key: one lock holder loads, the others
        # poll for its value, and load themselves only once the lock is free or gone.
        deadline = time.monotonic() + self._lock_ttl
        delay = 0.02
        waited = False
        while True:
            action = partial(self.backend.acquire_lock, lock_key, self._lock_ttl)
            token = await self._attempt("lock", action, _UNAVAILABLE)
            if token is None and time.monotonic() < deadline:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.2)
                waited = True
                value = await self._read(ns, key, decode)
                if value is not _MISSING:
                    self.metrics.hits.labels(ns).inc()
                    return value
                continue
            if isinstance(token, str) and waited:
                # The holder we waited for may have stored the value and freed the lock
                # between our last read and our lock.
                value = await self._read(ns, key, decode)
                if value is not _MISSING:
                    await self._unlock(lock_key, token)
                    self.metrics.hits.labels(ns).inc()
                    return value
            break
        try:
            return await self._load(ns, key, load, decode, ttl, tags)
        finally:
            if isinstance(token, str):
                await self._unlock(lock_key, token)

    async def _unlock(self, lock_key: str, token: str) -> None:
        # Not bypassable: a lock left behind makes other replicas wait for its lease.
        action = partial(self.backend.release_lock, lock_key, token)
        await self._attempt("unlock", action, None, bypassable=False)

    async def _load(
        self,
        ns: str,
        key: str,
        load: Callable[[], Awaitable[Any]],
        decode: Decoder,
        ttl: float,
        tags: Collection[str],
    ) -> Any:
        self.metrics.misses.labels(ns).inc()
        started = time.perf_counter()
        try:
            value = await load()
        finally:
            self.metrics.load_seconds.labels(ns).observe(time.perf_counter() - started)
        raw = encode(value)
        await self._write(key, raw, ttl, tags)
        # Decoded from the bytes, so a miss returns exactly what a later hit will.
        return decode(raw)


class Namespace:
    """A named, versioned part of the cache with its default TTL; see `Cache.namespace`.

    Bump the version when the shape of the cached values changes, or to drop the whole
    namespace: old keys are no longer read and expire on their own.
    """

    def __init__(self, cache: Cache, name: str, version: int, ttl: float) -> None:
        self.cache = cache
        self.name = name
        self.version = version
        self.ttl = ttl
        self._scope = f"v{version}:{name}"

    def key(self, key: str) -> str:
        """The full key under which the back end stores `key`."""
        return f"{self.cache.prefix}:{self._scope}:{key}"

    async def get(self, key: str, returns: type[T]) -> T | None:
        """The cached value rebuilt as `returns`, or None on a miss (or a cached None)."""
        value = await self.cache._read(self.name, self.key(key), decoder_for(returns))
        if value is _MISSING:
            self.cache.metrics.misses.labels(self.name).inc()
            return None
        self.cache.metrics.hits.labels(self.name).inc()
        return cast(T, value)

    async def set(
        self, key: str, value: object, *, ttl: float | None = None, tags: Collection[str] = ()
    ) -> None:
        """Store `value` for `ttl` seconds (the namespace's default if None) with `tags`."""
        ttl = self.ttl if ttl is None else _check_ttl(ttl)
        await self.cache._write(self.key(key), encode(value), ttl, tags)

    async def delete(self, *keys: str) -> None:
        await self.cache._delete([self.key(key) for key in keys])

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[T]],
        returns: type[T],
        *,
        ttl: float | None = None,
        tags: Collection[str] = (),
    ) -> T:
        """The cached value, or the loader's, stored on the way; one load per key at a time.

        Concurrent callers of one key, in this process and in other replicas sharing the
        back end, share the result of a single loader call; treat it as read-only.
        """
        ttl = self.ttl if ttl is None else _check_ttl(ttl)
        value = await self.cache._get_or_load(
            self.name,
            self.key(key),
            f"{self.cache.prefix}:lock:{self._scope}:{key}",
            loader,
            decoder_for(returns),
            ttl,
            tags,
        )
        return cast(T, value)


def _check_ttl(ttl: float) -> float:
    if not ttl > 0:
        raise ValueError(f"a TTL must be positive, not {ttl!r}")
    return ttl


async def read_through(
    namespace: Namespace | None, key: str, loader: Callable[[], Awaitable[T]], returns: type[T]
) -> T:
    """`namespace.get_or_load`, or just the loader when caching is off."""
    if namespace is None:
        return await loader()
    return await namespace.get_or_load(key, loader, returns)
