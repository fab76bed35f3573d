"""Cache-aside with TTLs, versioned namespaces, tags and single-flight loading.

In-process in embedded mode, Redis in distributed mode; the services see the same API.
"""

from wayfare.kit.cache.cache import Cache, Namespace, read_through
from wayfare.kit.cache.codec import decoder_for, encode
from wayfare.kit.cache.decorator import CachedFunction, cached
from wayfare.kit.cache.memory import MemoryBackend
from wayfare.kit.cache.metrics import CacheMetrics
from wayfare.kit.cache.port import CacheBackend, CacheBackendError
from wayfare.kit.cache.reads import ReadCaches, read_caches
from wayfare.kit.cache.redis import RedisBackend
from wayfare.kit.cache.singleflight import SingleFlight

__all__ = [
    "Cache",
    "CacheBackend",
    "CacheBackendError",
    "CacheMetrics",
    "CachedFunction",
    "MemoryBackend",
    "Namespace",
    "ReadCaches",
    "RedisBackend",
    "SingleFlight",
    "cached",
    "decoder_for",
    "encode",
    "read_caches",
    "read_through",
]
