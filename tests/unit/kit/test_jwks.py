"""The JWKS cache against a real HTTP server: one fetch per burst, refetch on TTL, failures."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from wayfare.kit.auth import JwksCache, SigningKey, generate_signing_key


class JwksServer:
    """Serves whatever JWKS the test sets, slowly enough for requests to overlap."""

    def __init__(self) -> None:
        self.keys: list[SigningKey] = [generate_signing_key(), generate_signing_key()]
        self.requests = 0
        self.failure: str | None = None
        self.junk = False
        self.delay = 0.05
        self.url = ""
        self._runner: web.AppRunner | None = None

    @property
    def kids(self) -> list[str]:
        return [key.kid for key in self.keys]

    async def _serve(self, _request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await asyncio.sleep(self.delay)
        if self.failure == "status":
            return web.json_response({"error": "down"}, status=503)
        if self.failure == "not-json":
            return web.Response(text="<html>gateway timeout</html>", content_type="text/html")
        if self.failure == "not-a-jwks":
            return web.json_response(["not", "a", "key", "set"])
        if self.failure == "keys-not-a-list":
            return web.json_response({"keys": None})
        if self.failure == "no-keys":
            return web.json_response({"error": "upstream"})
        public: list[Any] = [key.public_jwk for key in self.keys]
        if self.junk:
            public = ["junk", {"kid": "no-kty"}, {**public[0], "x": 42, "kid": "bad-x"}, *public]
        return web.json_response({"keys": public})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/.well-known/jwks.json", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/.well-known/jwks.json"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class Changes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
async def server() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


async def test_a_known_kid_is_found_after_the_first_fetch(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    cache = JwksCache(server.url, session, ttl=60, min_refetch_interval=60)

    found = await cache.get(server.kids[0])

    assert found is not None
    assert found.key_id == server.kids[0]
    assert await cache.get(server.kids[1]) is not None
    assert server.requests == 1


async def test_a_burst_of_unknown_kids_makes_a_single_fetch(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    cache = JwksCache(server.url, session, ttl=60, min_refetch_interval=0)
    await cache.get(server.kids[0])
    assert server.requests == 1

    found = await asyncio.gather(*(cache.get(f"forged-{i}") for i in range(50)))

    assert found == [None] * 50
    assert server.requests == 2
    assert cache.fetches == 2


async def test_a_cold_burst_shares_one_fetch_and_everyone_gets_the_key(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    cache = JwksCache(server.url, session, ttl=60, min_refetch_interval=0)

    found = await asyncio.gather(*(cache.get(server.kids[i % 2]) for i in range(50)))

    assert all(key is not None for key in found)
    assert server.requests == 1


async def test_an_unknown_kid_within_the_min_refetch_interval_makes_no_fetch(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    cache = JwksCache(server.url, session, ttl=60, min_refetch_interval=60)
    await cache.get(server.kids[0])
    server.keys.append(generate_signing_key())

    assert await cache.get(server.kids[-1]) is None
    assert await cache.get("forged") is None
    assert server.requests == 1


async def test_an_unknown_kid_after_the_min_refetch_interval_is_fetched(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    cache = JwksCache(server.url, session, ttl=60, min_refetch_interval=0.1)
    await cache.get(server.kids[0])
    server.keys.append(generate_signing_key())
    await asyncio.sleep(0.15)

    assert await cache.get(server.kids[-1]) is not None
    assert server.requests == 2


async def test_the_set_is_refetched_after_the_ttl(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    cache = JwksCache(server.url, session, ttl=0.3, min_refetch_interval=60)
    await cache.get(server.kids[0])
    await cache.get(server.kids[0])
    assert server.requests == 1

    await asyncio.sleep(0.35)
    await cache.get(server.kids[0])

    assert server.requests == 2


async def test_a_key_removed_server_side_disappears_after_refetch_and_is_reported(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    changes = Changes()
    cache = JwksCache(server.url, session, ttl=0.3, min_refetch_interval=60, on_change=changes)
    removed = server.kids[1]
    assert await cache.get(removed) is not None
    after_first_fetch = changes.count

    server.keys.pop(1)
    assert await cache.get(removed) is not None, "still trusted until the TTL"
    await asyncio.sleep(0.35)

    assert await cache.get(removed) is None
    assert await cache.get(server.kids[0]) is not None
    assert changes.count == after_first_fetch + 1


async def test_an_unchanged_set_is_not_reported_as_a_change(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    changes = Changes()
    cache = JwksCache(server.url, session, ttl=0.1, min_refetch_interval=0, on_change=changes)
    await cache.get(server.kids[0])
    after_first_fetch = changes.count

    await asyncio.sleep(0.15)
    await cache.get(server.kids[0])

    assert server.requests == 2
    assert changes.count == after_first_fetch


@pytest.mark.parametrize(
    "failure", ["status", "not-json", "not-a-jwks", "keys-not-a-list", "no-keys"]
)
async def test_a_failed_fetch_keeps_the_old_keys(
    failure: str, server: JwksServer, session: aiohttp.ClientSession
) -> None:
    changes = Changes()
    cache = JwksCache(server.url, session, ttl=0.1, min_refetch_interval=0, on_change=changes)
    kid = server.kids[0]
    await cache.get(kid)
    after_first_fetch = changes.count

    server.failure = failure
    await asyncio.sleep(0.15)
    found = await cache.get(kid)

    assert server.requests == 2, "the stale set was not refetched"
    assert found is not None
    assert found.key_id == kid
    assert changes.count == after_first_fetch


async def test_unusable_entries_are_skipped_and_the_good_keys_kept(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    server.junk = True
    cache = JwksCache(server.url, session, ttl=60, min_refetch_interval=60)

    assert await cache.get(server.kids[0]) is not None
    assert await cache.get(server.kids[1]) is not None
    assert await cache.get("bad-x") is None


async def test_an_unreachable_server_keeps_the_old_keys(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    cache = JwksCache(server.url, session, ttl=0.1, min_refetch_interval=0)
    kid = server.kids[0]
    await cache.get(kid)

    await server.stop()
    await asyncio.sleep(0.15)

    assert await cache.get(kid) is not None
    assert cache.fetches == 2


async def test_a_failed_fetch_is_not_retried_at_once(
    server: JwksServer, session: aiohttp.ClientSession
) -> None:
    """A dead users service is not hammered: failures count against the interval."""
    cache = JwksCache(server.url, session, ttl=60, min_refetch_interval=60)
    server.failure = "status"

    assert await cache.get(server.kids[0]) is None
    assert await cache.get(server.kids[0]) is None

    assert server.requests == 1
