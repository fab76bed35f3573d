"""The event bus: CloudEvents envelopes published to and consumed from topic queues.

`MemoryBus` serves embedded mode and `AmqpBus` RabbitMQ; both satisfy `EventBus`, and
`tests/contract/test_bus.py` runs the same cases against each.
"""

from wayfare.kit.bus._backoff import Backoff
from wayfare.kit.bus.amqp import AmqpBus
from wayfare.kit.bus.envelope import Event, MalformedEvent
from wayfare.kit.bus.factory import bus_for
from wayfare.kit.bus.memory import MemoryBus, topic_matches
from wayfare.kit.bus.port import BatchHandler, DeadLetter, EventBus, Handler

__all__ = [
    "AmqpBus",
    "Backoff",
    "BatchHandler",
    "DeadLetter",
    "Event",
    "EventBus",
    "Handler",
    "MalformedEvent",
    "MemoryBus",
    "bus_for",
    "topic_matches",
]
