"""Calls to the hotels' and flights' internal hold endpoints, as saga steps see them.

A 404, 409 or 422 is the service saying no (sold out, hold closed): the saga must not
retry it. Timeouts, refused connections and 5xx answers are transient and raised as
they are, for the saga to retry.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import aiohttp

from wayfare.kit.auth.service import SERVICE_TOKEN_HEADER
from wayfare.kit.saga import StepRefused

__all__ = ["InventoryClient", "UpstreamUnavailable"]


class UpstreamUnavailable(Exception):
    pass


class InventoryClient:
    def __init__(
        self, http: aiohttp.ClientSession, base_urls: Sequence[str], service_token: str
    ) -> None:
        if not base_urls:
            raise ValueError("no upstream URL configured")
        self._http = http
        self._urls = itertools.cycle([url.rstrip("/") for url in base_urls])
        self._headers = {SERVICE_TOKEN_HEADER: service_token}

    async def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        url = f"{next(self._urls)}{path}"
        async with self._http.post(url, json=body or {}, headers=self._headers) as response:
            payload: dict[str, Any] = await response.json(content_type=None)
            if response.status < 300:
                return payload
            if response.status in (404, 409, 422):
                raise StepRefused(str(payload.get("detail") or payload.get("title")))
            raise UpstreamUnavailable(f"{url} answered {response.status}")
