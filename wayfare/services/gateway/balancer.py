"""Round-robin over a service's replicas, passing over one that just refused a connection."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

__all__ = ["RoundRobin"]


class RoundRobin:
    def __init__(self, urls: Sequence[str], *, cooldown: float = 2.0) -> None:
        if not urls:
            raise ValueError("a service needs at least one upstream URL")
        self.urls = [url.rstrip("/") for url in urls]
        self.cooldown = cooldown
        self._next = 0
        self._down_until = [0.0] * len(self.urls)

    def candidates(self) -> Iterator[str]:
        """Every replica once, starting with the next in turn; cooling-down ones last."""
        if len(self.urls) == 1:
            # Nothing to order (the usual case, once per request): skip the clock and sort.
            yield self.urls[0]
            return
        start = self._next
        self._next = (self._next + 1) % len(self.urls)
        now = time.monotonic()
        order = [(start + i) % len(self.urls) for i in range(len(self.urls))]
        order.sort(key=lambda i: self._down_until[i] > now)
        for index in order:
            yield self.urls[index]

    def mark_down(self, url: str) -> None:
        self._down_until[self.urls.index(url)] = time.monotonic() + self.cooldown
