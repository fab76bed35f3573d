"""Seats as the units flight holds take, and the check that none is lost or made.

A flight's row is its seat counter: one conditional UPDATE takes seats only where
enough are free, and its row lock (PostgreSQL) or the write lock (SQLite) orders
concurrent holds, so a flight cannot be overbooked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.kit.holds import Hold, HoldStatus, SoldOut
from wayfare.services.flights.models import flights, holds

__all__ = ["InventoryReport", "Seats", "check_inventory"]

_MAX_VIOLATIONS = 100


class Seats:
    """The `Inventory` of the flights service: one counter row per flight."""

    async def take(self, session: AsyncSession, hold: Hold) -> None:
        free = flights.c.seats - flights.c.held - flights.c.confirmed
        result = await session.execute(
            update(flights)
            .where(flights.c.id == hold.resource_id, free >= hold.quantity)
            .values(held=flights.c.held + hold.quantity)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise SoldOut("not enough seats free on this flight")

    async def confirm(self, session: AsyncSession, hold: Hold) -> None:
        await session.execute(
            update(flights)
            .where(flights.c.id == hold.resource_id)
            .values(
                held=flights.c.held - hold.quantity,
                confirmed=flights.c.confirmed + hold.quantity,
            )
        )

    async def give_back(self, session: AsyncSession, hold: Hold, from_status: HoldStatus) -> None:
        counter = flights.c.held if from_status is HoldStatus.HELD else flights.c.confirmed
        await session.execute(
            update(flights)
            .where(flights.c.id == hold.resource_id)
            .values({counter: counter - hold.quantity})
        )


@dataclass(frozen=True)
class InventoryReport:
    flights: int
    violation_count: int = 0
    violations: list[dict[str, Any]] = field(default_factory=list)  # the first hundred

    @property
    def ok(self) -> bool:
        return self.violation_count == 0


async def check_inventory(session: AsyncSession) -> InventoryReport:
    """Every flight's counters within bounds and equal to the holds on it."""

    def covered(status: HoldStatus) -> Any:
        return func.coalesce(
            func.sum(case((holds.c.status == status, holds.c.quantity), else_=0)), 0
        )

    # One statement, so both sides are read from the same snapshot.
    query = (
        select(
            flights.c.id,
            flights.c.seats,
            flights.c.held,
            flights.c.confirmed,
            covered(HoldStatus.HELD).label("held_by_holds"),
            covered(HoldStatus.CONFIRMED).label("confirmed_by_holds"),
        )
        .select_from(flights)
        .outerjoin(
            holds,
            and_(
                holds.c.resource_id == flights.c.id,
                holds.c.status.in_([HoldStatus.HELD, HoldStatus.CONFIRMED]),
            ),
        )
        .group_by(flights.c.id, flights.c.seats, flights.c.held, flights.c.confirmed)
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
                    "flight_id": row["id"],
                    "seats": row["seats"],
                    "held": row["held"],
                    "confirmed": row["confirmed"],
                    "held_by_holds": int(row["held_by_holds"]),
                    "confirmed_by_holds": int(row["confirmed_by_holds"]),
                    "problems": problems,
                }
            )
    return InventoryReport(flights=count, violation_count=bad, violations=violations)


def _problems(row: Any) -> list[str]:
    problems = []
    if row["held"] < 0 or row["confirmed"] < 0:
        problems.append("negative counter")
    if row["held"] + row["confirmed"] > row["seats"]:
        problems.append("overbooked")
    if row["held"] != row["held_by_holds"]:
        problems.append("held differs from the HELD holds")
    if row["confirmed"] != row["confirmed_by_holds"]:
        problems.append("confirmed differs from the CONFIRMED holds")
    return problems
