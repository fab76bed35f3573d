"""A bare pass-through proxy, the yardstick the gateway is measured against.

It does what any reverse proxy must do and nothing else: one shared aiohttp session,
the request forwarded as received (minus hop-by-hop headers), the response sent back
whole. No routing, auth, rate limit, metrics or logging, so the difference between
it and the gateway is the price of those features, not of proxying in Python.

Run it under uvicorn with the upstream in `BENCH_UPSTREAM`:

    BENCH_UPSTREAM=http://127.0.0.1:8001 python -m uvicorn bench.passthrough:app \
        --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import os

import aiohttp
from starlette.types import Message, Receive, Scope, Send
from yarl import URL

__all__ = ["PassThrough", "app"]

# Meaningful for one connection only (RFC 9110 §7.6.1); `host` and `content-length`
# are set again by aiohttp and uvicorn for their own connections.
_DROP_REQUEST = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
_DROP_RESPONSE = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"transfer-encoding",
        b"content-length",
        b"date",
        b"server",
    }
)


class PassThrough:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Same pool and decoding choices as the gateway's session, so the two
                # proxies differ only in what the gateway does around the call.
                self.session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=1000, limit_per_host=0),
                    timeout=aiohttp.ClientTimeout(total=10.0, sock_connect=2.0),
                    auto_decompress=False,
                )
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.session is not None
        body = await _read_body(receive)
        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name not in _DROP_REQUEST
        }
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        query: bytes = scope.get("query_string", b"")
        target = raw + b"?" + query if query else raw
        try:
            async with self.session.request(
                scope["method"],
                # Already percent-encoded by the client: forwarded byte for byte.
                URL(self.upstream + target.decode("latin-1"), encoded=True),
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as response:
                payload = await response.read()
                status = response.status
                reply = [
                    (name.lower(), value)
                    for name, value in response.raw_headers
                    if name.lower() not in _DROP_RESPONSE
                ]
        except (aiohttp.ClientError, TimeoutError):
            status, reply, payload = 502, [], b""
        reply.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": reply})
        await send({"type": "http.response.body", "body": payload})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return b""
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


# Read at import because uvicorn imports the app by name and passes no arguments.
app = PassThrough(os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8001"))
