"""The route table: which public paths reach which service, and on what terms."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_ROUTES", "Route", "RouteTable"]


@dataclass(frozen=True)
class Route:
    prefix: str
    service: str
    # Public routes pass without a token; everything else needs a verified one.
    public: bool = False
    # Paths (after the prefix is stripped) under the stricter "auth" rate limit.
    strict_paths: frozenset[str] = frozenset()
    strip: str = "/api/v1"

    def upstream_path(self, path: str) -> str:
        return path[len(self.strip) :] if self.strip and path.startswith(self.strip) else path


DEFAULT_ROUTES: tuple[Route, ...] = (
    Route(
        "/api/v1/auth/",
        "users",
        public=True,
        strict_paths=frozenset({"/auth/login", "/auth/register"}),
    ),
    Route("/api/v1/users/", "users"),
    Route("/api/v1/hotels/", "hotels", public=True),
    Route("/api/v1/flights/", "flights", public=True),
    Route("/api/v1/bookings/", "bookings"),
    Route("/api/v1/notifications/", "notifications"),
    Route("/api/v1/events/", "audit"),
    Route("/.well-known/jwks.json", "users", public=True, strip=""),
)


class RouteTable:
    def __init__(self, routes: tuple[Route, ...] = DEFAULT_ROUTES) -> None:
        # Longest prefix first, so a specific route wins over a general one.
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)

    def match(self, path: str) -> Route | None:
        for route in self.routes:
            if path.startswith(route.prefix) or path == route.prefix.rstrip("/"):
                return route
        return None

    @property
    def services(self) -> set[str]:
        return {route.service for route in self.routes}
