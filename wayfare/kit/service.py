"""The app factory every service uses.

It gives each service the same outer shell: a lifespan that opens and closes its
adapters, `/healthz`, `/readyz`, `/metrics`, request ids, JSON logs, a request body
cap, and RFC 9457 problem+json for every error.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wayfare.kit.observability import (
    get_logger,
    new_request_id,
    new_traceparent,
    request_id_var,
    traceparent_var,
    valid_request_id,
)
from wayfare.kit.problems import PROBLEM_JSON, Problem, problem_body

__all__ = ["ReadinessCheck", "create_service"]

ReadinessCheck = Callable[[FastAPI], Awaitable[None]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]

_log = get_logger("wayfare.service")


def create_service(
    name: str,
    *,
    routers: Sequence[APIRouter],
    lifespan: Lifespan,
    readiness: Sequence[ReadinessCheck] = (),
    max_body_bytes: int = 1_048_576,
    version: str = "1.0.0",
) -> FastAPI:
    registry = CollectorRegistry()
    app = FastAPI(title=f"Wayfare {name}", version=version, lifespan=lifespan)
    app.state.service_name = name
    app.state.metrics_registry = registry
    for router in routers:
        app.include_router(router)
    _add_probes(app, registry, readiness)
    _add_problem_handlers(app)
    app.add_middleware(
        RequestContextMiddleware, service=name, registry=registry, max_body_bytes=max_body_bytes
    )
    return app


def _add_probes(
    app: FastAPI, registry: CollectorRegistry, checks: Sequence[ReadinessCheck]
) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> Response:
        for check in checks:
            try:
                await check(app)
            except Exception as exc:
                _log.warning("not ready", check=check.__name__, error=repr(exc))
                return _problem_response(Problem(503, f"{check.__name__} failed"))
        return Response(b'{"status":"ready"}', media_type="application/json")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _problem_response(problem: Problem, instance: str | None = None) -> Response:
    return Response(
        problem.body(instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


def _add_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return _problem_response(exc, request.url.path)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else None
        return _problem_response(
            Problem(exc.status_code, detail, headers=dict(exc.headers or {})), request.url.path
        )

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # The offending input is not echoed back: it may be huge or hold control bytes.
        errors = [
            {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type")}
            for err in exc.errors()
        ]
        return _problem_response(
            Problem(422, "the request does not match the schema", errors=errors), request.url.path
        )

    async def on_error(request: Request, exc: Exception) -> Response:
        _log.exception("unhandled error", path=request.url.path)
        return _problem_response(Problem(500, "an internal error occurred"), request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_error)


class RequestContextMiddleware:
    """Request id, trace context, metrics and the body cap, as plain ASGI for speed."""

    def __init__(
        self, app: ASGIApp, *, service: str, registry: CollectorRegistry, max_body_bytes: int
    ) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        supplied = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = supplied if valid_request_id(supplied) else new_request_id()
        parent = headers.get(b"traceparent", b"").decode("latin-1") or None
        rid_token = request_id_var.set(request_id)
        tp_token = traceparent_var.set(new_traceparent(parent))
        declared = headers.get(b"content-length")
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        received = 0

        async def capped_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise Problem(413, f"the request body exceeds {self.max_body_bytes} bytes")
            return message

        try:
            if declared is not None and (
                not declared.isdigit() or int(declared) > self.max_body_bytes
            ):
                await self._too_large(scope, send_with_id)
            else:
                await self.app(scope, capped_receive, send_with_id)
        finally:
            route = scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            self.requests.labels(scope["method"], route_path, str(status)).inc()
            self.latency.labels(scope["method"], route_path).observe(time.perf_counter() - started)
            request_id_var.reset(rid_token)
            traceparent_var.reset(tp_token)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        body = problem_body(
            413, f"the request body exceeds {self.max_body_bytes} bytes", instance=scope["path"]
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
