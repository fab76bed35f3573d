"""The cache's Prometheus metrics, on the registry of the service that owns the cache."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

__all__ = ["CacheMetrics"]


class CacheMetrics:
    """Hits, misses, back-end errors and loader latency.

    A registry is required: in embedded mode several services share one process, and each
    exposes its own `/metrics`.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.hits = Counter(
            "wayfare_cache_hits",
            "Reads answered without running the loader (from the store or a shared load).",
            ["namespace"],
            registry=registry,
        )
        self.misses = Counter(
            "wayfare_cache_misses",
            "Reads that found nothing; for a read-through, reads that ran the loader.",
            ["namespace"],
            registry=registry,
        )
        self.errors = Counter(
            "wayfare_cache_errors",
            "Back-end operations that failed and were bypassed, and stored values that "
            "no longer decoded.",
            ["operation"],
            registry=registry,
        )
        self.load_seconds = Histogram(
            "wayfare_cache_load_seconds",
            "Time spent in the loader (the upstream call) on a miss.",
            ["namespace"],
            registry=registry,
        )
