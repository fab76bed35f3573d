"""One replica for the cross-process single-flight test: 50 concurrent misses on one key.

Run as `python _cache_worker.py REDIS_URL NAMESPACE COUNTER_KEY`. It prints `ready` once
connected, waits for a line on stdin so that both replicas start together, then prints a
JSON report of what its callers got and what its metrics counted.
"""

from __future__ import annotations

import asyncio
import os
import sys

import orjson
from prometheus_client import CollectorRegistry

from wayfare.kit.cache import Cache, RedisBackend

CALLERS = 50
LOADER_SECONDS = 0.3


async def main(url: str, namespace: str, counter_key: str) -> None:
    registry = CollectorRegistry()
    backend = RedisBackend(url)
    async with Cache(backend, registry=registry) as cache:
        await backend.client.ping()
        fares = cache.namespace(namespace)

        async def load() -> dict[str, int]:
            call = await backend.client.incr(counter_key)
            await asyncio.sleep(LOADER_SECONDS)
            return {"pid": os.getpid(), "call": call}

        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        values = await asyncio.gather(
            *(fares.get_or_load("fare", load, dict[str, int]) for _ in range(CALLERS))
        )

    def sample(metric: str) -> float:
        return registry.get_sample_value(metric, {"namespace": namespace}) or 0.0

    report = {
        "values": values,
        "hits": sample("wayfare_cache_hits_total"),
        "misses": sample("wayfare_cache_misses_total"),
    }
    sys.stdout.write(orjson.dumps(report).decode() + "\n")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
