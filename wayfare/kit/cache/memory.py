"""The in-process back end of embedded mode: an LRU dictionary with expiry and tags."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass

__all__ = ["MemoryBackend"]


@dataclass(slots=True, frozen=True)
class _Entry:
    value: bytes
    expires_at: float
    tags: tuple[str, ...]


class MemoryBackend:
    """Holds at most `max_entries` values, dropping the least recently used first."""

    def __init__(
        self, *, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._locks: dict[str, tuple[str, float]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        self._entries.clear()
        self._tags.clear()
        self._locks.clear()

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def set(self, key: str, value: bytes, ttl: float, tags: Collection[str] = ()) -> None:
        self._remove(key)
        self._entries[key] = _Entry(value, self._clock() + ttl, tuple(tags))
        for tag in tags:
            self._tags.setdefault(tag, set()).add(key)
        while len(self._entries) > self._max_entries:
            self._remove(next(iter(self._entries)))

    async def delete(self, keys: Collection[str]) -> None:
        for key in keys:
            self._remove(key)

    async def invalidate_tag(self, tag: str) -> None:
        for key in self._tags.pop(tag, set()):
            self._remove(key)

    async def acquire_lock(self, key: str, ttl: float) -> str | None:
        now = self._clock()
        held = self._locks.get(key)
        if held is not None and held[1] > now:
            return None
        token = secrets.token_hex(16)
        self._locks[key] = (token, now + ttl)
        return token

    async def release_lock(self, key: str, token: str) -> None:
        held = self._locks.get(key)
        if held is not None and held[0] == token:
            del self._locks[key]

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for tag in entry.tags:
            keys = self._tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[tag]
