"""The caches of a service's public reads: searches (short-lived) and details (longer)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from wayfare.kit.cache.cache import Cache, Namespace

__all__ = ["ReadCaches", "read_caches"]


@dataclass(frozen=True)
class ReadCaches:
    searches: Namespace | None = None
    details: Namespace | None = None

    @classmethod
    def of(cls, cache: Cache | None, *, search_ttl: float, details_ttl: float) -> ReadCaches:
        if cache is None:
            return cls()
        return cls(
            searches=cache.namespace("search", ttl=search_ttl),
            details=cache.namespace("details", ttl=details_ttl),
        )


def read_caches(request: Request) -> ReadCaches:
    """FastAPI dependency: the caches the bootstrap put on the app."""
    caches: ReadCaches = getattr(request.app.state, "read_caches", ReadCaches())
    return caches
