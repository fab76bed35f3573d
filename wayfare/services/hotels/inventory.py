"""Room-nights as the units hotel holds take, and the check that none is lost or made.

Capacity is taken with one conditional UPDATE over the stay's nights: it changes a
night only where enough rooms are free, so a stay is held when every night changed
and rolled back otherwise. PostgreSQL first locks the nights in date order, so holds
over overlapping stays queue instead of deadlocking; SQLite serialises writers anyway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.kit.holds import Hold, HoldStatus, SoldOut, locks_rows
from wayfare.services.hotels.models import holds, room_nights

__all__ = ["InventoryReport", "RoomNights", "check_inventory"]

_MAX_VIOLATIONS = 100


class RoomNights:
    """The `Inventory` of the hotels service: one counter row per room type and night."""

    async def take(self, session: AsyncSession, hold: Hold) -> None:
        await self._lock(session, hold)
        free = room_nights.c.capacity - room_nights.c.held - room_nights.c.confirmed
        result = await session.execute(
            update(room_nights)
            .where(self._nights(hold), free >= hold.quantity)
            .values(held=room_nights.c.held + hold.quantity)
        )
        if result.rowcount != _night_count(hold):  # type: ignore[attr-defined]
            raise SoldOut("not enough rooms free on every night of the stay")

    async def confirm(self, session: AsyncSession, hold: Hold) -> None:
        await self._lock(session, hold)
        await session.execute(
            update(room_nights)
            .where(self._nights(hold))
            .values(
                held=room_nights.c.held - hold.quantity,
                confirmed=room_nights.c.confirmed + hold.quantity,
            )
        )

    async def give_back(self, session: AsyncSession, hold: Hold, from_status: HoldStatus) -> None:
        counter = room_nights.c.held if from_status is HoldStatus.HELD else room_nights.c.confirmed
        await self._lock(session, hold)
        await session.execute(
            update(room_nights).where(self._nights(hold)).values({counter: counter - hold.quantity})
        )

    @staticmethod
    def _nights(hold: Hold) -> ColumnElement[bool]:
        return and_(
            room_nights.c.room_type_id == hold.resource_id,
            room_nights.c.night >= hold.details["check_in"],
            room_nights.c.night < hold.details["check_out"],
        )

    async def _lock(self, session: AsyncSession, hold: Hold) -> None:
        if locks_rows(session):
            await session.execute(
                select(room_nights.c.night)
                .where(self._nights(hold))
                .order_by(room_nights.c.night)
                .with_for_update()
            )


def _night_count(hold: Hold) -> int:
    check_in: date = hold.details["check_in"]
    check_out: date = hold.details["check_out"]
    return (check_out - check_in).days


@dataclass(frozen=True)
class InventoryReport:
    room_nights: int
    violation_count: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)  # the first hundred

    @property
    def ok(self) -> bool:
        return self.violation_count == 0


async def check_inventory(session: AsyncSession) -> InventoryReport:
    """Every room-night's counters within bounds and equal to the holds that cover it."""

    def covered(status: HoldStatus) -> Any:
        return func.coalesce(
            func.sum(case((holds.c.status == status, holds.c.quantity), else_=0)), 0
        )

    # One statement, so both sides are read from the same snapshot.
    query = (
        select(
            room_nights.c.room_type_id,
            room_nights.c.night,
            room_nights.c.capacity,
            room_nights.c.held,
            room_nights.c.confirmed,
            covered(HoldStatus.HELD).label("held_by_holds"),
            covered(HoldStatus.CONFIRMED).label("confirmed_by_holds"),
        )
        .select_from(room_nights)
        .outerjoin(
            holds,
            and_(
                holds.c.resource_id == room_nights.c.room_type_id,
                holds.c.check_in <= room_nights.c.night,
                holds.c.check_out > room_nights.c.night,
                holds.c.status.in_([HoldStatus.HELD, HoldStatus.CONFIRMED]),
            ),
        )
        .group_by(
            room_nights.c.room_type_id,
            room_nights.c.night,
            room_nights.c.capacity,
            room_nights.c.held,
            room_nights.c.confirmed,
        )
    )
    count = bad = 0
    violations: list[dict[str, Any]] = []
    for row in (await session.execute(query)).mappings():
        count += 1
        problems = _problems(row)
        bad += bool(problems)
        if problems and len(violations) < _MAX_VIOLATIONS:
            violations.append(
                {
                    "room_type_id": row["room_type_id"],
                    "night": row["night"].isoformat(),
                    "capacity": row["capacity"],
                    "held": row["held"],
                    "confirmed": row["confirmed"],
                    "held_by_holds": int(row["held_by_holds"]),
                    "confirmed_by_holds": int(row["confirmed_by_holds"]),
                    "problems": problems,
                }
            )
    return InventoryReport(room_nights=count, violation_count=bad, violations=violations)


def _problems(row: Any) -> list[str]:
    problems = []
    if row["held"] < 0 or row["confirmed"] < 0:
        problems.append("negative counter")
    if row["held"] + row["confirmed"] > row["capacity"]:
        problems.append("overbooked")
    if row["held"] != row["held_by_holds"]:
        problems.append("held differs from the HELD holds")
    if row["confirmed"] != row["confirmed_by_holds"]:
        problems.append("confirmed differs from the CONFIRMED holds")
    return problems
