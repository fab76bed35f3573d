"""Flight rules: which searches and seat holds are valid."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

__all__ = ["MAX_SEATS", "FlightNotFound", "InvalidRequest", "Search", "checked_search"]

MAX_SEATS = 9


class FlightNotFound(Exception):
    pass


class InvalidRequest(ValueError):
    pass


@dataclass(frozen=True)
class Search:
    origin: str
    destination: str
    day: date
    seats: int


def checked_search(origin: str, destination: str, day: date, seats: int, today: date) -> Search:
    """The search, or `InvalidRequest` saying what is wrong with it."""
    if origin.casefold() == destination.casefold():
        raise InvalidRequest("origin and destination must differ")
    if day < today:
        raise InvalidRequest("the date is in the past")
    if not 1 <= seats <= MAX_SEATS:
        raise InvalidRequest(f"between 1 and {MAX_SEATS} seats may be booked at once")
    return Search(origin=origin, destination=destination, day=day, seats=seats)
