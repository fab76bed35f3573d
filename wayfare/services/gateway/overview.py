"""`GET /api/v1/me/overview`: profile, recent bookings and unread notifications in one answer.

The three parts are fetched concurrently, each under its own timeout, so the answer
takes about as long as the slowest part, not their sum. A part that fails or times out
is left out and named in `degraded`, and the answer is still 200; only when every part
fails is it 503. Complete answers are cached per traveller (cache-aside, single-flight)
and dropped when the traveller writes through the gateway or when an event says their
data changed; degraded answers are never cached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from wayfare.kit.bus import Event
from wayfare.kit.cache import Cache, Namespace
from wayfare.kit.observability import get_logger
from wayfare.services.gateway.balancer import RoundRobin

__all__ = ["INVALIDATING_EVENTS", "Overview", "OverviewUnavailable", "Part"]

_log = get_logger("wayfare.gateway.overview")

# The events after which a traveller's cached overview (or profile) is out of date.
INVALIDATING_EVENTS = ["user.updated", "booking.*", "notification.*"]


@dataclass(frozen=True)
class Part:
    name: str
    service: str
    path: str


PARTS = (
    Part("profile", "users", "/users/me"),
    Part("bookings", "bookings", "/bookings?page=1&page_size=5"),
    Part("notifications", "notifications", "/notifications?unread_only=true&page_size=10"),
)


class OverviewUnavailable(Exception):
    """Every part failed."""


class _Degraded(Exception):
    """An incomplete answer: returned to the callers, never stored."""

    def __init__(self, answer: dict[str, Any]) -> None:
        super().__init__("degraded overview")
        self.answer = answer


class _PartMissing(Exception):
    pass


class Overview:
    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        replicas: Mapping[str, RoundRobin],
        cache: Cache | None,
        part_timeout: float,
        ttl: float = 60.0,
    ) -> None:
        self._session = session
        self._replicas = replicas
        self._timeout = aiohttp.ClientTimeout(total=part_timeout)
        self._cache: Namespace | None = (
            cache.namespace("overview", version=1, ttl=ttl) if cache else None
        )
        # Profiles change rarely and are dropped by `user.updated`, so they live longer.
        self._profiles: Namespace | None = (
            cache.namespace("profile", version=1, ttl=300.0) if cache else None
        )
        self._cache_front = cache

    async def get(self, user_id: str, headers: dict[str, str]) -> tuple[dict[str, Any], bool]:
        """The overview and whether it came from the cache."""
        if self._cache is None:
            return await self._compose(headers), False
        loaded = False

        async def load() -> dict[str, Any]:
            nonlocal loaded
            loaded = True
            answer = await self._compose(headers)
            if answer["degraded"]:
                raise _Degraded(answer)
            return answer

        try:
            answer = await self._cache.get_or_load(user_id, load, dict, tags=[f"user:{user_id}"])
        except _Degraded as degraded:
            return degraded.answer, False
        return answer, not loaded

    async def forget(self, user_id: str, *, profile: bool = False) -> None:
        """Drop a traveller's cached overview (after their own write, or an event)."""
        if self._cache is not None:
            await self._cache.delete(user_id)
        if profile and self._profiles is not None:
            await self._profiles.delete(user_id)

    async def on_event(self, event: Event) -> None:
        if self._cache_front is None or not isinstance(event.data, dict):
            return
        if event.type == "user.updated":
            user_id = event.data.get("id") or event.subject
            if user_id:
                await self._cache_front.invalidate_tag(f"user:{user_id}")
        elif (user_id := event.data.get("user_id")) is not None:
            await self.forget(str(user_id))

    async def _compose(self, headers: dict[str, str]) -> dict[str, Any]:
        results = await asyncio.gather(*(self._fetch_part(part, headers) for part in PARTS))
        answer: dict[str, Any] = {"degraded": []}
        for part, result in zip(PARTS, results, strict=True):
            answer[part.name] = result
            if result is None:
                answer["degraded"].append(part.name)
        if len(answer["degraded"]) == len(PARTS):
            raise OverviewUnavailable
        return answer

    async def _fetch_part(self, part: Part, headers: dict[str, str]) -> Any:
        user_id = headers.get("x-user-id")
        if part.name != "profile" or self._profiles is None or user_id is None:
            return await self._fetch(part, headers)

        async def load() -> dict[str, Any]:
            profile = await self._fetch(part, headers)
            if profile is None:
                raise _PartMissing
            return dict(profile)

        try:
            return await self._profiles.get_or_load(user_id, load, dict, tags=[f"user:{user_id}"])
        except _PartMissing:
            return None

    async def _fetch(self, part: Part, headers: dict[str, str]) -> Any:
        replicas = self._replicas.get(part.service)
        if replicas is None:
            return None
        url = next(replicas.candidates()) + part.path
        try:
            async with self._session.get(url, headers=headers, timeout=self._timeout) as response:
                if response.status != 200:
                    _log.warning("overview part refused", part=part.name, status=response.status)
                    return None
                return await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            _log.warning("overview part failed", part=part.name, error=repr(exc))
            return None
