"""Stay rules: which stays may be searched or held, and what they cost."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

__all__ = [
    "MAX_NIGHTS",
    "MAX_ROOMS",
    "HotelNotFound",
    "InvalidStay",
    "RoomTypeNotFound",
    "Stay",
    "checked_stay",
]

MAX_NIGHTS = 30
MAX_ROOMS = 9


class HotelNotFound(Exception):
    pass


class RoomTypeNotFound(Exception):
    pass


class InvalidStay(ValueError):
    pass


@dataclass(frozen=True)
class Stay:
    check_in: date
    check_out: date
    guests: int
    rooms: int = 1

    @property
    def nights(self) -> int:
        return (self.check_out - self.check_in).days

    def dates(self) -> list[date]:
        return [self.check_in + timedelta(days=n) for n in range(self.nights)]

    def price_cents(self, nightly_cents: int) -> int:
        return nightly_cents * self.nights * self.rooms

    def fits(self, max_guests: int) -> bool:
        return max_guests * self.rooms >= self.guests


def checked_stay(
    check_in: date, check_out: date, guests: int, today: date, *, rooms: int = 1
) -> Stay:
    """The stay, or `InvalidStay` saying what is wrong with it."""
    if check_out <= check_in:
        raise InvalidStay("check-out must be after check-in")
    if (check_out - check_in).days > MAX_NIGHTS:
        raise InvalidStay(f"a stay may last at most {MAX_NIGHTS} nights")
    if check_in < today:
        raise InvalidStay("check-in is in the past")
    if guests < 1:
        raise InvalidStay("at least one guest is needed")
    if not 1 <= rooms <= MAX_ROOMS:
        raise InvalidStay(f"between 1 and {MAX_ROOMS} rooms may be held at once")
    return Stay(check_in=check_in, check_out=check_out, guests=guests, rooms=rooms)
