"""One pooled HTTP client per service, carrying the request id and trace context along."""

from __future__ import annotations

from types import SimpleNamespace

import aiohttp

from wayfare.kit.observability import request_id_var, traceparent_var

__all__ = ["create_client_session", "propagation_headers"]


def propagation_headers() -> dict[str, str]:
    """Headers that tie an outgoing call to the request being served."""
    headers: dict[str, str] = {}
    request_id = request_id_var.get()
    if request_id:
        headers["X-Request-ID"] = request_id
    traceparent = traceparent_var.get()
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


async def _on_request_start(
    _session: aiohttp.ClientSession,
    _ctx: SimpleNamespace,
    params: aiohttp.TraceRequestStartParams,
) -> None:
    for name, value in propagation_headers().items():
        params.headers.setdefault(name, value)


def create_client_session(
    *,
    connect_timeout: float = 2.0,
    read_timeout: float = 10.0,
    total_timeout: float | None = None,
    pool_size: int = 100,
    pool_size_per_host: int = 0,
    propagate: bool = True,
    decompress: bool = True,
) -> aiohttp.ClientSession:
    """Call inside a running loop (a lifespan), never at import; close it on shutdown."""
    trace_configs = []
    if propagate:
        tracing = aiohttp.TraceConfig()
        tracing.on_request_start.append(_on_request_start)
        trace_configs.append(tracing)
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(
            total=total_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        ),
        connector=aiohttp.TCPConnector(limit=pool_size, limit_per_host=pool_size_per_host),
        trace_configs=trace_configs,
        auto_decompress=decompress,
    )
