"""Forwarding one request to an upstream replica with aiohttp, headers cleaned both ways."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from yarl import URL

from wayfare.services.gateway.balancer import RoundRobin

__all__ = ["UpstreamError", "UpstreamResponse", "forward", "request_headers", "response_headers"]

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the gateway alone; a client sending them is trying to pass as someone else.
_GATEWAY_OWNED = frozenset(
    {
        b"host",
        b"content-length",
        b"x-user-id",
        b"x-user-role",
        b"x-request-id",
        b"traceparent",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"forwarded",
    }
)
# Built once here rather than on every request.
_REQUEST_DROP = _HOP_BY_HOP | _GATEWAY_OWNED
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RESPONSE_DROP = frozenset({b"date", b"server", b"content-length", b"x-request-id", *_HOP_BY_HOP})


class UpstreamError(Exception):
    def __init__(self, status: int, detail: str, upstream: str | None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.upstream = upstream


@dataclass(frozen=True)
class UpstreamResponse:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    upstream: str


def _connection_listed(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            named.update(part.strip().lower() for part in value.split(b","))
    return named


def request_headers(raw: list[tuple[bytes, bytes]], extra: dict[str, str]) -> dict[str, str]:
    """The client's headers minus hop-by-hop and gateway-owned ones, plus the gateway's."""
    listed = _connection_listed(raw)
    drop = _REQUEST_DROP | listed if listed else _REQUEST_DROP
    headers: dict[str, str] = {}
    for name, value in raw:
        if name not in drop:
            key = name.decode("latin-1")
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
    headers.update(extra)
    return headers


def response_headers(upstream: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    # Names lowered once and compared as bytes, as ASGI wants them.
    lowered = [(name.lower(), value) for name, value in upstream.raw_headers]
    listed = _connection_listed(lowered)
    drop = _RESPONSE_DROP | listed if listed else _RESPONSE_DROP
    return [(name, value) for name, value in lowered if name not in drop]


async def forward(
    session: aiohttp.ClientSession,
    replicas: RoundRobin,
    *,
    method: str,
    path_qs: str,
    headers: dict[str, str],
    body: bytes,
    timeouts: aiohttp.ClientTimeout,
) -> UpstreamResponse:
    """Send to the next replica; a refused connection moves on to the next one.

    Only a failure to connect is retried for every method (nothing reached the
    upstream); a timeout after sending is retried only for idempotent methods.
    """
    last_error: UpstreamError | None = None
    for base in replicas.candidates():
        try:
            async with session.request(
                method,
                URL(base + path_qs, encoded=True),
                headers=headers,
                data=body or None,
                timeout=timeouts,
                allow_redirects=False,
            ) as response:
                payload = await response.read()
                return UpstreamResponse(
                    status=response.status,
                    headers=response_headers(response),
                    body=payload,
                    upstream=base,
                )
        except aiohttp.ClientConnectorError:
            replicas.mark_down(base)
            last_error = UpstreamError(502, "the upstream service cannot be reached", base)
        except TimeoutError:
            last_error = UpstreamError(504, "the upstream service did not answer in time", base)
            if method not in _IDEMPOTENT:
                break
        except aiohttp.ClientError:
            last_error = UpstreamError(502, "the upstream service failed to answer", base)
            if method not in _IDEMPOTENT:
                break
    assert last_error is not None
    raise last_error
