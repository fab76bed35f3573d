"""What both adapters do the same way on the consuming side."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def check_subscription(
    queue: str, patterns: Sequence[str], *, max_attempts: int, window: int
) -> None:
    if not queue or queue.endswith(".dlq"):
        raise ValueError(f"invalid queue name {queue!r}")
    if isinstance(patterns, str) or not patterns:
        raise ValueError("patterns must be a non-empty sequence of topic patterns")
    if max_attempts < 1 or window < 1:
        raise ValueError("max_attempts and prefetch / max_batch must be at least 1")


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def next_batch(inbox: asyncio.Queue[T], max_batch: int, max_wait: float) -> list[T]:
    """Wait for one item, then gather more until `max_batch` or `max_wait` after the first."""
    batch = [await inbox.get()]
    deadline = asyncio.get_running_loop().time() + max_wait
    while len(batch) < max_batch:
        if not inbox.empty():
            batch.append(inbox.get_nowait())
            continue
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(inbox.get(), remaining))
        except TimeoutError:
            break
    return batch
