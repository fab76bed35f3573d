from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before a failed event is delivered again: `base * factor**(attempt-1)`, capped.

    No jitter: the AMQP adapter keeps one delay queue per distinct delay, so delays are
    deliberately few and repeatable.
    """

    base: float = 0.05
    factor: float = 2.0
    cap: float = 10.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError(f"invalid backoff {self!r}")

    def delay(self, failed_attempt: int) -> float:
        """Seconds to wait after attempt number `failed_attempt` (from 1) has failed."""
        return float(min(self.cap, self.base * self.factor ** (failed_attempt - 1)))
