"""Choosing the bus adapter from a URL: RabbitMQ when one is given, in-process otherwise."""

from __future__ import annotations

from wayfare.kit.bus.amqp import AmqpBus
from wayfare.kit.bus.memory import MemoryBus
from wayfare.kit.bus.port import EventBus

__all__ = ["bus_for"]


def bus_for(url: str | None) -> EventBus:
    if url is None:
        return MemoryBus()
    if not url.startswith(("amqp://", "amqps://")):
        raise ValueError(f"WAYFARE_BROKER_URL must be an amqp:// URL, not {url!r}")
    return AmqpBus(url)
