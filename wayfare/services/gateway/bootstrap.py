"""The one place the gateway's adapters are chosen and wired."""

from __future__ import annotations

from contextlib import AsyncExitStack

import aiohttp

from wayfare.kit.auth.remote import jwks_url, remote_verifier
from wayfare.kit.bus import EventBus, bus_for
from wayfare.kit.cache import Cache
from wayfare.kit.http import create_client_session
from wayfare.kit.settings import Settings
from wayfare.services.gateway.app import Gateway, GatewayConfig
from wayfare.services.gateway.overview import INVALIDATING_EVENTS, Overview
from wayfare.services.gateway.ratelimit import RateLimits
from wayfare.services.gateway.routes import RouteTable

__all__ = ["MAX_ATTEMPTS", "NAME", "PATTERNS", "QUEUE", "create_app"]

NAME = "gateway"


QUEUE = "gateway"
PATTERNS = INVALIDATING_EVENTS
MAX_ATTEMPTS = 5


def create_app(settings: Settings, *, bus: EventBus | None = None) -> Gateway:
    """The gateway; `bus` is shared when several services run in one process."""
    keys_url = jwks_url(settings)
    stack = AsyncExitStack()

    async def startup(gateway: Gateway) -> None:
        gateway.session = create_client_session(
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_timeout,
            pool_size=1000,
            propagate=False,  # the gateway sets these headers itself
            decompress=False,
        )
        gateway.verifier = remote_verifier(settings, gateway.session)
        cache = None
        if settings.cache_enabled:
            cache = Cache.from_url(settings.redis_url, registry=gateway.registry)
            await cache.start()
            stack.push_async_callback(cache.close)
        gateway.overview = Overview(
            session=gateway.session,
            replicas=gateway.replicas,
            cache=cache,
            part_timeout=settings.overview_timeout,
        )
        events = bus
        if events is None:
            events = bus_for(settings.broker_url)
            await events.start()
            stack.push_async_callback(events.close)
        # Replicas share one queue: the cache they invalidate is shared too (Redis).
        await events.subscribe(
            QUEUE, PATTERNS, gateway.overview.on_event, max_attempts=MAX_ATTEMPTS
        )

    async def shutdown(gateway: Gateway) -> None:
        await stack.aclose()
        if gateway.session is not None:
            await gateway.session.close()
        await gateway.limits.close()

    async def ready(gateway: Gateway) -> bool:
        if gateway.session is None:
            return False
        try:
            async with gateway.session.get(keys_url) as response:
                return response.status == 200
        except aiohttp.ClientError:
            return False

    return Gateway(
        GatewayConfig(
            upstreams=settings.upstreams,
            max_body_bytes=settings.max_body_bytes,
            timeout=aiohttp.ClientTimeout(
                total=settings.upstream_timeout, sock_connect=settings.upstream_connect_timeout
            ),
            trust_forwarded_for=settings.trust_forwarded_for,
        ),
        routes=RouteTable(),
        limits=RateLimits(
            default=settings.rate_limit_default,
            auth=settings.rate_limit_auth,
            redis_url=settings.redis_url,
        ),
        startup=startup,
        shutdown=shutdown,
        ready=ready,
    )
