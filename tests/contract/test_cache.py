"""The cache's contract, written once and run against the in-process back end and Redis."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import orjson
import pytest
from prometheus_client import REGISTRY, CollectorRegistry
from pydantic import BaseModel
from redis.asyncio import Redis

from wayfare.kit.cache import Cache, CacheBackend, MemoryBackend, RedisBackend, cached
from wayfare.kit.testing.servers import RedisServer

ConnectBackend = Callable[[], CacheBackend]


@dataclass(frozen=True)
class Seat:
    row: int
    letter: str


class Hotel(BaseModel):
    id: int
    name: str
    opened: datetime
    seats: list[Seat] = []


def a_hotel(hotel_id: int = 1) -> Hotel:
    return Hotel(
        id=hotel_id,
        name=f"Hotel {hotel_id}",
        opened=datetime(2020, 5, 1, 12, 30, tzinfo=UTC),
        seats=[Seat(1, "A")],
    )


class Loader:
    """A slow upstream that counts its calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self._delay = delay

    async def __call__(self) -> dict[str, int]:
        self.calls += 1
        call = self.calls
        await asyncio.sleep(self._delay)
        return {"call": call}


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.servers)])
def connect(request: pytest.FixtureRequest) -> ConnectBackend:
    """Opens another client of one shared store, as a further replica would."""
    if request.param == "memory":
        shared = MemoryBackend()
        return lambda: shared
    server = cast(RedisServer, request.getfixturevalue("redis"))
    return lambda: RedisBackend(server.url)


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def cache(connect: ConnectBackend, registry: CollectorRegistry) -> AsyncIterator[Cache]:
    async with Cache(connect(), registry=registry, retry_after=0.1) as started:
        yield started


@pytest.fixture
def name() -> str:
    """A namespace of this test alone, since the Redis server is shared by the session."""
    return f"t{uuid.uuid4().hex[:12]}"


def sample(registry: CollectorRegistry, metric: str, namespace: str) -> float:
    return registry.get_sample_value(metric, {"namespace": namespace}) or 0.0


def errors(registry: CollectorRegistry) -> float:
    return sum(
        s.value
        for metric in registry.collect()
        for s in metric.samples
        if s.name == "wayfare_cache_errors_total"
    )


async def test_a_stored_value_reads_back_until_deleted(
    cache: Cache, registry: CollectorRegistry, name: str
) -> None:
    """Get, set and delete, with hits and misses counted per namespace."""
    fares = cache.namespace(name)
    assert await fares.get("lis-jfk", dict[str, int]) is None
    await fares.set("lis-jfk", {"eur": 420})
    assert await fares.get("lis-jfk", dict[str, int]) == {"eur": 420}
    await fares.delete("lis-jfk")
    assert await fares.get("lis-jfk", dict[str, int]) is None
    assert sample(registry, "wayfare_cache_hits_total", name) == 1
    assert sample(registry, "wayfare_cache_misses_total", name) == 2


async def test_models_and_dataclasses_come_back_as_their_types(cache: Cache, name: str) -> None:
    hotels = cache.namespace(name)
    await hotels.set("1", a_hotel(1))
    await hotels.set("seats", [Seat(2, "C"), Seat(3, "D")])
    assert await hotels.get("1", Hotel) == a_hotel(1)
    assert await hotels.get("seats", list[Seat]) == [Seat(2, "C"), Seat(3, "D")]


async def test_a_value_is_gone_after_its_ttl(cache: Cache, name: str) -> None:
    """The TTL is per use: here shorter than the namespace's default."""
    fares = cache.namespace(name, ttl=60)
    await fares.set("short", {"eur": 1}, ttl=0.4)
    await fares.set("long", {"eur": 2})
    assert await fares.get("short", dict[str, int]) == {"eur": 1}
    deadline = time.monotonic() + 3
    while await fares.get("short", dict[str, int]) is not None:
        assert time.monotonic() < deadline, "the value outlived its TTL by seconds"
        await asyncio.sleep(0.05)
    assert await fares.get("long", dict[str, int]) == {"eur": 2}

    loader = Loader()
    assert await fares.get_or_load("loaded", loader, dict[str, int], ttl=0.4) == {"call": 1}
    assert await fares.get_or_load("loaded", loader, dict[str, int], ttl=0.4) == {"call": 1}
    await asyncio.sleep(0.5)
    assert await fares.get_or_load("loaded", loader, dict[str, int], ttl=0.4) == {"call": 2}


async def test_bumping_the_version_starts_the_namespace_empty(cache: Cache, name: str) -> None:
    v1, v2 = cache.namespace(name, version=1), cache.namespace(name, version=2)
    await v1.set("1", {"shape": 1})
    assert v1.key("1") != v2.key("1")
    assert await v2.get("1", dict[str, int]) is None
    loader = Loader()
    assert await v2.get_or_load("1", loader, dict[str, int]) == {"call": 1}
    assert loader.calls == 1
    # Replicas still on the old version keep their values during a rolling deploy.
    assert await v1.get("1", dict[str, int]) == {"shape": 1}


async def test_namespaces_do_not_share_keys(cache: Cache, name: str) -> None:
    await cache.namespace(f"{name}a").set("1", {"from": 1})
    assert await cache.namespace(f"{name}b").get("1", dict[str, int]) is None


async def test_invalidating_a_tag_drops_its_keys_in_every_namespace(
    cache: Cache, name: str
) -> None:
    overviews, bookings = cache.namespace(f"{name}o"), cache.namespace(f"{name}b")
    user, other = f"{name}:user:42", f"{name}:user:7"
    await overviews.set("42", {"n": 1}, tags=[user])
    await bookings.set("42:1", {"n": 2}, tags=[user, f"{name}:booking:1"])
    await overviews.set("7", {"n": 3}, tags=[other])

    await cache.invalidate_tag(user)

    assert await overviews.get("42", dict[str, int]) is None
    assert await bookings.get("42:1", dict[str, int]) is None
    assert await overviews.get("7", dict[str, int]) == {"n": 3}
    # The tag works again for values stored after its invalidation.
    await overviews.set("42", {"n": 4}, tags=[user])
    await cache.invalidate_tag(user)
    assert await overviews.get("42", dict[str, int]) is None


async def test_the_decorator_loads_once_then_serves_hits(cache: Cache, name: str) -> None:
    calls: list[int] = []

    async def find_hotel(hotel_id: int, currency: str = "EUR") -> Hotel:
        calls.append(hotel_id)
        return a_hotel(hotel_id)

    get_hotel = cached(cache.namespace(name), ttl=30)(find_hotel)

    first = await get_hotel(1)
    second = await get_hotel(1, currency="EUR")
    assert await get_hotel(2) == a_hotel(2)
    assert calls == [1, 2]
    assert first == second == a_hotel(1)
    assert isinstance(second, Hotel)
    assert get_hotel.__name__ == "find_hotel"

    await get_hotel.invalidate(1)
    await get_hotel(1)
    assert calls == [1, 2, 1]


async def test_decorator_templates_make_the_key_and_the_tags(cache: Cache, name: str) -> None:
    hotels = cache.namespace(name)
    calls: list[int] = []

    async def find_hotel(hotel_id: int) -> Hotel:
        calls.append(hotel_id)
        return a_hotel(hotel_id)

    get_hotel = cached(hotels, key="{hotel_id}", tags=[name + ":hotel:{hotel_id}"])(find_hotel)

    await get_hotel(5)
    assert await hotels.get("5", Hotel) == a_hotel(5)
    await cache.invalidate_tag(f"{name}:hotel:5")
    await get_hotel(5)
    assert calls == [5, 5]


async def test_a_template_naming_no_parameter_fails_at_decoration(cache: Cache, name: str) -> None:
    async def find_hotel(hotel_id: int) -> Hotel:
        return a_hotel(hotel_id)

    with pytest.raises(ValueError, match="hotel_di"):
        cached(cache.namespace(name), key="{hotel_di}")(find_hotel)


async def test_a_hundred_concurrent_misses_make_one_loader_call(
    cache: Cache, registry: CollectorRegistry, name: str
) -> None:
    fares = cache.namespace(name)
    loader = Loader(delay=0.1)
    results = await asyncio.wait_for(
        asyncio.gather(*(fares.get_or_load("k", loader, dict[str, int]) for _ in range(100))),
        timeout=10,
    )
    assert loader.calls == 1
    assert results == [{"call": 1}] * 100
    assert sample(registry, "wayfare_cache_misses_total", name) == 1
    assert sample(registry, "wayfare_cache_hits_total", name) == 99
    assert sample(registry, "wayfare_cache_load_seconds_count", name) == 1
    assert sample(registry, "wayfare_cache_load_seconds_sum", name) >= 0.1


async def test_two_fronts_on_one_store_share_one_load(
    cache: Cache, connect: ConnectBackend, name: str
) -> None:
    """Two caches on one store, as two replicas are, coordinate through the store's lock."""
    loader = Loader(delay=0.3)
    async with Cache(connect(), registry=CollectorRegistry()) as replica:
        fronts = [cache.namespace(name), replica.namespace(name)]
        results = await asyncio.wait_for(
            asyncio.gather(
                *(f.get_or_load("k", loader, dict[str, int]) for f in fronts for _ in range(50))
            ),
            timeout=10,
        )
    assert loader.calls == 1
    assert results == [{"call": 1}] * 100


async def test_a_failing_loader_reaches_every_waiter_and_is_not_cached(
    cache: Cache, name: str
) -> None:
    fares = cache.namespace(name)
    calls = 0

    async def broken() -> dict[str, int]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        raise RuntimeError("upstream down")

    outcomes = await asyncio.gather(
        *(fares.get_or_load("k", broken, dict[str, int]) for _ in range(10)),
        return_exceptions=True,
    )
    assert calls == 1
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    # The lock was released: the next load runs now, not after the lock's lease.
    loaded = fares.get_or_load("k", Loader(), dict[str, int])
    assert await asyncio.wait_for(loaded, timeout=2) == {"call": 1}


async def test_a_lock_is_exclusive_until_released_or_expired(cache: Cache, name: str) -> None:
    store = cache.backend
    lock = f"wayfare:lock:{name}"
    token = await store.acquire_lock(lock, 5)
    assert token is not None
    assert await store.acquire_lock(lock, 5) is None
    await store.release_lock(lock, "not-the-holder")
    assert await store.acquire_lock(lock, 5) is None
    await store.release_lock(lock, token)
    assert await store.acquire_lock(lock, 0.2) is not None
    await asyncio.sleep(0.3)
    assert await store.acquire_lock(lock, 5) is not None


async def test_metrics_live_on_the_registry_passed_in(
    connect: ConnectBackend, registry: CollectorRegistry, name: str
) -> None:
    """Several services share a process in embedded mode, each with its own registry."""
    other = CollectorRegistry()
    async with (
        Cache(connect(), registry=registry) as one,
        Cache(connect(), registry=other) as two,
    ):
        await one.namespace(name).get("k", dict[str, int])
    assert sample(registry, "wayfare_cache_misses_total", name) == 1
    assert sample(other, "wayfare_cache_misses_total", name) == 0
    assert REGISTRY.get_sample_value("wayfare_cache_misses_total", {"namespace": name}) is None
    assert two.metrics is not one.metrics


async def test_the_memory_back_end_drops_the_least_recently_used_beyond_its_bound() -> None:
    store = MemoryBackend(max_entries=2)
    await store.set("a", b"1", 60, tags=["t"])
    await store.set("b", b"2", 60)
    assert await store.get("a") == b"1"
    await store.set("c", b"3", 60)
    assert len(store) == 2
    assert await store.get("b") is None
    assert await store.get("a") == b"1"
    assert await store.get("c") == b"3"


@pytest.mark.servers
async def test_two_processes_on_one_redis_call_the_loader_once(
    redis: RedisServer, name: str
) -> None:
    counter = f"{name}:loads"
    worker = Path(__file__).with_name("_cache_worker.py")
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            str(worker),
            redis.url,
            name,
            counter,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            assert await asyncio.wait_for(process.stdout.readline(), timeout=30) == b"ready\n"
        # Both replicas wait on stdin, so their 50 callers each start together.
        outputs = await asyncio.wait_for(
            asyncio.gather(*(process.communicate(b"go\n") for process in processes)),
            timeout=30,
        )
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
                await process.wait()

    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr.decode()
    reports = [orjson.loads(stdout) for stdout, _ in outputs]
    client = Redis.from_url(redis.url)
    try:
        assert await client.get(counter) == b"1"
    finally:
        await client.aclose()
    values = [value for report in reports for value in report["values"]]
    assert len(values) == 100
    assert all(value == values[0] for value in values)
    assert sum(report["misses"] for report in reports) == 1
    assert sum(report["hits"] for report in reports) == 99


@pytest.mark.servers
async def test_a_stopped_redis_answers_from_the_loader_and_recovers_after_restart(
    redis: RedisServer, registry: CollectorRegistry, name: str
) -> None:
    async with Cache(RedisBackend(redis.url), registry=registry, retry_after=0.1) as cache:
        fares = cache.namespace(name)
        await fares.set("warm", {"eur": 1})
        loader = Loader()
        try:
            redis.stop()
            started = time.monotonic()
            for call in (1, 2, 3):
                assert await fares.get_or_load("k", loader, dict[str, int]) == {"call": call}
                await asyncio.sleep(0.15)  # past retry_after, so each call tries Redis again
            assert await fares.get("warm", dict[str, int]) is None
            await fares.set("x", {"eur": 2}, tags=[f"{name}:t"])
            await fares.delete("x")
            await cache.invalidate_tag(f"{name}:t")
            assert time.monotonic() - started < 5
            assert errors(registry) >= 3
        finally:
            if redis.process.poll() is not None:
                redis.start()

        await asyncio.sleep(0.15)
        assert await fares.get_or_load("k", loader, dict[str, int]) == {"call": 4}
        assert await fares.get_or_load("k", loader, dict[str, int]) == {"call": 4}
        assert loader.calls == 4
        assert sample(registry, "wayfare_cache_hits_total", name) >= 1


@pytest.mark.servers
async def test_a_redis_tag_set_lives_as_long_as_its_longest_lived_key(
    redis: RedisServer, registry: CollectorRegistry, name: str
) -> None:
    """Tag sets expire, so tags of long-gone values do not pile up in Redis."""
    backend = RedisBackend(redis.url)
    async with Cache(backend, registry=registry) as cache:
        fares, tag = cache.namespace(name), f"{name}:route:lis"
        await fares.set("short", {"eur": 1}, ttl=5, tags=[tag])
        assert 0 < await backend.client.pttl(f"wayfare:tag:{tag}") <= 5_000
        await fares.set("long", {"eur": 2}, ttl=60, tags=[tag])
        await fares.set("shorter", {"eur": 3}, ttl=1, tags=[tag])
        assert await backend.client.pttl(f"wayfare:tag:{tag}") > 55_000


def test_the_url_picks_the_back_end() -> None:
    assert isinstance(Cache.from_url(None, registry=CollectorRegistry()).backend, MemoryBackend)
    memory = Cache.from_url("memory://", registry=CollectorRegistry())
    assert isinstance(memory.backend, MemoryBackend)
    redis = Cache.from_url("redis://127.0.0.1:1/0", registry=CollectorRegistry())
    assert isinstance(redis.backend, RedisBackend)
    with pytest.raises(ValueError, match="postgresql"):
        Cache.from_url("postgresql://db", registry=CollectorRegistry())
