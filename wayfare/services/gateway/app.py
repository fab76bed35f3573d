"""The gateway: the single public entry, as a plain ASGI app.

Every request is matched against the route table, authenticated (bearer tokens
verified against the users service's JWKS, verified tokens remembered), rate limited,
forwarded to a replica of its service, and logged in one access-log line. It is not a
FastAPI app on purpose: its hot path is a few dictionary look-ups and one upstream call.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import orjson
from limits import RateLimitItem
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import Message, Receive, Scope, Send

from wayfare.kit.auth import InvalidToken, Principal, TokenVerifier, bearer_token
from wayfare.kit.observability import (
    get_logger,
    new_request_id,
    new_traceparent,
    request_id_var,
    valid_request_id,
)
from wayfare.kit.problems import PROBLEM_JSON, problem_body
from wayfare.services.gateway.balancer import RoundRobin
from wayfare.services.gateway.overview import Overview, OverviewUnavailable
from wayfare.services.gateway.proxy import UpstreamError, forward, request_headers
from wayfare.services.gateway.ratelimit import RateLimits
from wayfare.services.gateway.routes import RouteTable

__all__ = ["Gateway", "GatewayConfig"]

_access = get_logger("wayfare.gateway.access")
_log = get_logger("wayfare.gateway")


@dataclass(frozen=True)
class GatewayConfig:
    upstreams: dict[str, list[str]]
    max_body_bytes: int
    timeout: aiohttp.ClientTimeout
    trust_forwarded_for: bool = False


class _Reply(Exception):
    def __init__(
        self, status: int, detail: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or []


Startup = Callable[["Gateway"], Awaitable[None]]


class Gateway:
    def __init__(
        self,
        config: GatewayConfig,
        *,
        routes: RouteTable,
        limits: RateLimits,
        startup: Startup,
        shutdown: Startup,
        ready: Callable[[Gateway], Awaitable[bool]],
    ) -> None:
        self.config = config
        self.routes = routes
        self.limits = limits
        self.replicas = {name: RoundRobin(urls) for name, urls in config.upstreams.items()}
        for missing in sorted(routes.services - self.replicas.keys()):
            _log.warning("no upstream configured; its routes answer 503", service=missing)
        self._startup = startup
        self._shutdown = shutdown
        self._ready = ready
        self.session: aiohttp.ClientSession | None = None
        self.verifier: TokenVerifier | None = None
        self.overview: Overview | None = None
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "gateway_requests",
            "Requests answered by the gateway",
            ["service", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "gateway_request_duration_seconds",
            "Time to answer, upstream included",
            ["service"],
            registry=self.registry,
        )
        # The labelled children, looked up once each: `labels()` checks its arguments and
        # takes a lock on every call, on the hot path. Few keys: services times statuses.
        self._request_counters: dict[tuple[str, int], Counter] = {}
        self._latency_histograms: dict[str, Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup(self)
                except Exception as exc:
                    _log.exception("gateway failed to start")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown(self)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        supplied = _header(headers, b"x-request-id")
        request_id = supplied if supplied and valid_request_id(supplied) else new_request_id()
        token = request_id_var.set(request_id)
        path: str = scope["path"]
        method: str = scope["method"]
        principal: Principal | None = None
        upstream: str | None = None
        service = "-"
        status = 500
        try:
            local = self._local(path)
            if local is not None:
                status = await local(send, request_id)
                return
            if path == OVERVIEW_PATH:
                service = "overview"
                principal = await self._authenticate(headers, required=True)
                await self._limit(scope, headers, principal, None)
                status = await self._overview(scope, send, request_id, principal)
                return
            route = self.routes.match(path)
            if route is None or _has_dot_segment(path):
                raise _Reply(404, "no route for this path")
            service = route.service
            replicas = self.replicas.get(service)
            if replicas is None:
                raise _Reply(503, f"the {service} service is not configured")
            principal = await self._authenticate(headers, required=not route.public)
            upstream_path = route.upstream_path(path)
            policy = self.limits.auth if upstream_path in route.strict_paths else None
            await self._limit(scope, headers, principal, policy)
            body = await self._read_body(receive)
            path_qs = _upstream_target(scope, route.strip)
            assert self.session is not None
            result = await forward(
                self.session,
                replicas,
                method=method,
                path_qs=path_qs,
                headers=request_headers(headers, self._extra_headers(scope, request_id, principal)),
                body=body,
                timeouts=self.config.timeout,
            )
            upstream = result.upstream
            status = result.status
            if principal is not None and method not in _READS and status < 400:
                # Read-your-writes: the traveller's next overview is composed afresh.
                await self.overview_forget(principal.user_id)
            await _send(send, status, result.headers, result.body, request_id)
        except _Reply as reply:
            status = reply.status
            await _send_problem(send, reply.status, reply.detail, path, request_id, reply.headers)
        except UpstreamError as exc:
            status, upstream = exc.status, exc.upstream
            await _send_problem(send, exc.status, exc.detail, path, request_id)
        finally:
            elapsed = time.perf_counter() - started
            self._count(service, status, elapsed)
            _access.info(
                "request",
                method=method,
                path=path,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
                user_id=principal.user_id if principal else None,
                upstream=upstream,
            )
            request_id_var.reset(token)

    def _count(self, service: str, status: int, elapsed: float) -> None:
        counter = self._request_counters.get((service, status))
        if counter is None:
            counter = self._requests.labels(service, str(status))
            self._request_counters[service, status] = counter
        counter.inc()
        histogram = self._latency_histograms.get(service)
        if histogram is None:
            histogram = self._latency_histograms[service] = self._latency.labels(service)
        histogram.observe(elapsed)

    async def overview_forget(self, user_id: str) -> None:
        if self.overview is not None:
            await self.overview.forget(user_id, profile=True)

    async def _overview(
        self, scope: Scope, send: Send, request_id: str, principal: Principal | None
    ) -> int:
        if scope["method"] not in ("GET", "HEAD"):
            raise _Reply(405, "the overview can only be read", [(b"allow", b"GET")])
        assert principal is not None
        assert self.overview is not None
        headers = {
            "authorization": f"Bearer {principal.token}",
            "x-request-id": request_id,
            "x-user-id": principal.user_id,
            "traceparent": new_traceparent(_header(scope["headers"], b"traceparent")),
        }
        try:
            answer, hit = await self.overview.get(principal.user_id, headers)
        except OverviewUnavailable as exc:
            raise _Reply(503, "no part of the overview can be had right now") from exc
        body = orjson.dumps(answer)
        await _send(
            send,
            200,
            [(b"content-type", b"application/json"), (b"x-cache", b"hit" if hit else b"miss")],
            body,
            request_id,
        )
        return 200

    def _local(self, path: str) -> Callable[[Send, str], Awaitable[int]] | None:
        if path == "/healthz":
            return self._healthz
        if path == "/readyz":
            return self._readyz
        if path == "/metrics":
            return self._metrics
        return None

    async def _healthz(self, send: Send, request_id: str) -> int:
        await _send(
            send, 200, [(b"content-type", b"application/json")], b'{"status":"ok"}', request_id
        )
        return 200

    async def _readyz(self, send: Send, request_id: str) -> int:
        if await self._ready(self):
            await _send(
                send,
                200,
                [(b"content-type", b"application/json")],
                b'{"status":"ready"}',
                request_id,
            )
            return 200
        await _send_problem(send, 503, "the signing keys cannot be fetched", "/readyz", request_id)
        return 503

    async def _metrics(self, send: Send, request_id: str) -> int:
        body = generate_latest(self.registry)
        await _send(send, 200, [(b"content-type", CONTENT_TYPE_LATEST.encode())], body, request_id)
        return 200

    async def _authenticate(
        self, headers: list[tuple[bytes, bytes]], *, required: bool
    ) -> Principal | None:
        if not required:
            return None
        token = bearer_token(_header(headers, b"authorization"))
        if token is None:
            raise _Reply(401, "a bearer token is required", _CHALLENGE)
        assert self.verifier is not None
        try:
            return await self.verifier.verify(token)
        except InvalidToken as exc:
            _log.info("token refused", reason=str(exc))
            raise _Reply(401, "the bearer token is invalid", _CHALLENGE) from exc

    async def _limit(
        self,
        scope: Scope,
        headers: list[tuple[bytes, bytes]],
        principal: Principal | None,
        strict: RateLimitItem | None,
    ) -> None:
        address = self._client_address(scope, headers)
        if strict is not None:
            decision = await self.limits.hit(strict, f"auth:{address}")
        else:
            key = f"user:{principal.user_id}" if principal else f"ip:{address}"
            decision = await self.limits.hit(self.limits.default, key)
        if decision is not None:
            raise _Reply(429, "too many requests; slow down", decision.headers())

    def _client_address(self, scope: Scope, headers: list[tuple[bytes, bytes]]) -> str:
        if self.config.trust_forwarded_for:
            forwarded = _header(headers, b"x-forwarded-for")
            if forwarded:
                return forwarded.split(",")[0].strip()
        client = scope.get("client")
        return str(client[0]) if client else "unknown"

    def _extra_headers(
        self, scope: Scope, request_id: str, principal: Principal | None
    ) -> dict[str, str]:
        headers = scope["headers"]
        extra = {
            "x-request-id": request_id,
            "traceparent": new_traceparent(_header(headers, b"traceparent")),
            "x-forwarded-for": self._client_address(scope, headers),
            "x-forwarded-proto": scope.get("scheme", "http"),
        }
        if principal is not None:
            extra["x-user-id"] = principal.user_id
            extra["x-user-role"] = principal.role
        return extra

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                raise _Reply(400, "the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.config.max_body_bytes:
                raise _Reply(413, f"the request body exceeds {self.config.max_body_bytes} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


OVERVIEW_PATH = "/api/v1/me/overview"
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_CHALLENGE = [(b"www-authenticate", b'Bearer realm="wayfare"')]


def _has_dot_segment(path: str) -> bool:
    # "/api/v1/users/../../internal" must not reach a route the table does not expose.
    # Most paths have no dot at all: they are spared the split.
    return "." in path and any(segment in (".", "..") for segment in path.split("/"))


def _upstream_target(scope: Scope, strip: str) -> str:
    """The path and query to request upstream, still percent-encoded as the client sent it."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    prefix = strip.encode()
    if prefix and not raw.startswith(prefix):
        raise _Reply(404, "no route for this path")
    target = raw[len(prefix) :].decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


async def _send(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, request_id: str
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *headers,
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_problem(
    send: Send,
    status: int,
    detail: str,
    path: str,
    request_id: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = problem_body(status, detail, instance=path)
    await _send(
        send, status, [(b"content-type", PROBLEM_JSON.encode()), *(headers or [])], body, request_id
    )
