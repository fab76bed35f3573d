"""Holds: inventory set aside for a booking until it is confirmed, released or expires.

Hotels (room-nights) and flights (seats) share this lifecycle. Each service keeps its
own `holds` table, made by `holds_table`, and its own counters, reached through the
`Inventory` it implements::

    HELD ──confirm──▶ CONFIRMED ──release──▶ RELEASED
    HELD ──release──▶ RELEASED
    HELD ──expire───▶ EXPIRED

Every function runs inside the caller's transaction and is idempotent on the booking
id. On SQLite each starts with a write, which takes the database's one write lock at
once: a read first would have to upgrade its lock later, and WAL refuses that outright
when another writer got in between. On PostgreSQL the hold's row lock orders the calls
for one booking, and each `Inventory` locks its counters in a fixed order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.kit.db.types import UtcDateTime, utcnow
from wayfare.kit.observability import get_logger
from wayfare.kit.problems import Problem

__all__ = [
    "HOLD_CLOSED",
    "OPEN",
    "SOLD_OUT",
    "SOURCES",
    "Hold",
    "HoldClosed",
    "HoldError",
    "HoldNotFound",
    "HoldStatus",
    "Inventory",
    "Outcome",
    "SoldOut",
    "confirm_hold",
    "expire_holds",
    "expiry_sweeper",
    "get_hold",
    "hold_problem",
    "holds_table",
    "locks_rows",
    "place_hold",
    "release_hold",
    "sweep_interval",
]

_log = get_logger("wayfare.holds")

SOLD_OUT = "https://wayfare.dev/problems/sold-out"
HOLD_CLOSED = "https://wayfare.dev/problems/hold-closed"


class HoldStatus(StrEnum):
    HELD = "HELD"
    CONFIRMED = "CONFIRMED"
    RELEASED = "RELEASED"
    EXPIRED = "EXPIRED"


# The state machine: the statuses each status may be reached from.
SOURCES: Mapping[HoldStatus, tuple[HoldStatus, ...]] = {
    HoldStatus.CONFIRMED: (HoldStatus.HELD,),
    HoldStatus.RELEASED: (HoldStatus.HELD, HoldStatus.CONFIRMED),
    HoldStatus.EXPIRED: (HoldStatus.HELD,),
}
# The statuses that keep inventory taken.
OPEN = frozenset({HoldStatus.HELD, HoldStatus.CONFIRMED})


class HoldError(Exception):
    pass


class HoldNotFound(HoldError):
    pass


class SoldOut(HoldError):
    """Not enough free units for the hold; raised by `Inventory.take`."""


class HoldClosed(HoldError):
    """The booking's hold was released or has expired: it cannot be held or confirmed."""

    def __init__(self, hold: Hold) -> None:
        # Still HELD yet closed means past its time, before the sweeper marked it.
        state = "has expired" if hold.status is HoldStatus.HELD else f"is {hold.status}"
        super().__init__(f"the hold of booking {hold.booking_id} {state}")
        self.hold = hold


@dataclass(frozen=True)
class Hold:
    booking_id: str
    resource_id: str | None  # None on a tombstone: a release that came before any hold
    quantity: int
    price_cents: int
    status: HoldStatus
    expires_at: datetime
    created_at: datetime
    updated_at: datetime
    details: Mapping[str, Any] = field(default_factory=dict)  # the service's own columns


@dataclass(frozen=True)
class Outcome:
    hold: Hold
    changed: bool  # False when the call found its work already done
    previous: HoldStatus | None = None  # the status left, when `changed`


class Inventory(Protocol):
    """The counters a service keeps per unit (room-night, flight): capacity, held, confirmed."""

    async def take(self, session: AsyncSession, hold: Hold) -> None:
        """Add the hold to `held`, or raise `SoldOut` (the caller's transaction rolls back)."""
        ...

    async def confirm(self, session: AsyncSession, hold: Hold) -> None:
        """Move the hold's quantity from `held` to `confirmed`."""
        ...

    async def give_back(self, session: AsyncSession, hold: Hold, from_status: HoldStatus) -> None:
        """Subtract the hold from `held` or `confirmed`, whichever `from_status` counted it in."""
        ...


_BASE = (
    "id",
    "resource_id",
    "quantity",
    "price_cents",
    "status",
    "expires_at",
    "created_at",
    "updated_at",
)


def holds_table(metadata: MetaData, *details: Column[Any]) -> Table:
    """The `holds` table; `details` are the service's own (nullable) columns."""
    return Table(
        "holds",
        metadata,
        Column("id", String(64), primary_key=True),  # the booking id
        Column("resource_id", String(36), nullable=True),
        Column("quantity", Integer, nullable=False),
        Column("price_cents", Integer, nullable=False),
        Column("status", String(16), nullable=False),
        Column("expires_at", UtcDateTime(), nullable=False),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
        *details,
        Index("ix_holds_due", "status", "expires_at"),
        Index("ix_holds_resource_id", "resource_id"),
    )


def locks_rows(session: AsyncSession) -> bool:
    """True where `SELECT ... FOR UPDATE` locks rows (PostgreSQL).

    SQLite has no row locks: its first write takes the database's one write lock.
    """
    bind = session.bind
    return bind is not None and bind.dialect.name == "postgresql"


async def get_hold(session: AsyncSession, holds: Table, booking_id: str) -> Hold | None:
    row = (await session.execute(select(holds).where(holds.c.id == booking_id))).mappings().first()
    return None if row is None else _hold(holds, row)


async def place_hold(
    session: AsyncSession,
    holds: Table,
    inventory: Inventory,
    *,
    booking_id: str,
    resource_id: str,
    quantity: int,
    price_cents: int,
    ttl: timedelta,
    details: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> Outcome:
    """Hold `quantity` units once per booking; a repeat returns the open hold unchanged.

    Raises `SoldOut`, or `HoldClosed` when the booking's hold was released or expired.
    """
    now = now or utcnow()
    values = {
        "id": booking_id,
        "resource_id": resource_id,
        "quantity": quantity,
        "price_cents": price_cents,
        "status": HoldStatus.HELD,
        "expires_at": now + ttl,
        "created_at": now,
        "updated_at": now,
        **(details or {}),
    }
    if await _insert_new(session, holds, values):
        hold = _hold(holds, values)
        await inventory.take(session, hold)
        return Outcome(hold, changed=True)
    existing = await get_hold(session, holds, booking_id)
    if existing is None:  # the row that conflicted is never deleted
        raise HoldNotFound(booking_id)
    if existing.status in OPEN and not _lapsed(existing, now):
        return Outcome(existing, changed=False)
    raise HoldClosed(existing)


async def confirm_hold(
    session: AsyncSession,
    holds: Table,
    inventory: Inventory,
    booking_id: str,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Confirm a live hold; a confirmed one is returned unchanged.

    An expired hold is refused even before the sweeper has marked it.
    """
    now = now or utcnow()
    hold = await _move(
        session, holds, booking_id, HoldStatus.HELD, HoldStatus.CONFIRMED, now, live=True
    )
    if hold is not None:
        await inventory.confirm(session, hold)
        return Outcome(hold, changed=True, previous=HoldStatus.HELD)
    existing = await get_hold(session, holds, booking_id)
    if existing is None:
        raise HoldNotFound(booking_id)
    if existing.status is HoldStatus.CONFIRMED:
        return Outcome(existing, changed=False)
    raise HoldClosed(existing)


async def release_hold(
    session: AsyncSession,
    holds: Table,
    inventory: Inventory,
    booking_id: str,
    *,
    now: datetime | None = None,
) -> Outcome:
    """Give a held or confirmed hold's units back; a closed hold is returned unchanged.

    An unknown booking gets a RELEASED tombstone, so that a hold request still in flight
    (a saga step that timed out on its side) is refused when it finally arrives.
    """
    now = now or utcnow()
    # Two rounds: in PostgreSQL the tombstone may collide with a hold being placed right
    # now; once that commits, the second round sees it and releases it.
    for _ in range(2):
        for source in SOURCES[HoldStatus.RELEASED]:
            hold = await _move(session, holds, booking_id, source, HoldStatus.RELEASED, now)
            if hold is not None:
                await inventory.give_back(session, hold, source)
                return Outcome(hold, changed=True, previous=source)
        tombstone = {
            "id": booking_id,
            "resource_id": None,
            "quantity": 0,
            "price_cents": 0,
            "status": HoldStatus.RELEASED,
            "expires_at": now,
            "created_at": now,
            "updated_at": now,
        }
        if await _insert_new(session, holds, tombstone):
            return Outcome(_hold(holds, tombstone), changed=False)
        existing = await get_hold(session, holds, booking_id)
        if existing is not None and existing.status not in OPEN:
            return Outcome(existing, changed=False)
    raise HoldError(f"the hold of booking {booking_id} kept changing while it was released")


async def expire_holds(
    session: AsyncSession,
    holds: Table,
    inventory: Inventory,
    *,
    now: datetime | None = None,
    limit: int = 200,
) -> list[Hold]:
    """Expire up to `limit` holds past their time and give their units back."""
    now = now or utcnow()
    due = (
        select(holds.c.id)
        .where(holds.c.status == HoldStatus.HELD, holds.c.expires_at <= now)
        .order_by(holds.c.id)
        .limit(limit)
    )
    if locks_rows(session):
        # Claimed apart: PostgreSQL may re-run a LIMIT subquery inside an UPDATE (and
        # then pass the limit); SKIP LOCKED lets replicas share the work.
        claimed = (await session.execute(due.with_for_update(skip_locked=True))).scalars().all()
        if not claimed:
            return []
        chosen = holds.c.id.in_(claimed)
    else:
        # One statement in SQLite, so the first thing the transaction does is write.
        chosen = holds.c.id.in_(due.scalar_subquery())
    result = await session.execute(
        update(holds)
        .where(chosen, holds.c.status == HoldStatus.HELD, holds.c.expires_at <= now)
        .values(status=HoldStatus.EXPIRED, updated_at=now)
        .returning(*holds.c)
    )
    # Counters are locked in one global order (resource, then its own order inside
    # `give_back`), so two sweepers cannot deadlock on each other's units.
    expired = sorted(
        (_hold(holds, row) for row in result.mappings()),
        key=lambda hold: (hold.resource_id or "", hold.booking_id),
    )
    for hold in expired:
        await inventory.give_back(session, hold, HoldStatus.HELD)
    return expired


def hold_problem(error: HoldError) -> Problem:
    """The problem+json answer of an internal hold endpoint that says no."""
    if isinstance(error, SoldOut):
        return Problem(409, str(error) or "sold out", title="Sold out", type_=SOLD_OUT)
    if isinstance(error, HoldClosed):
        return Problem(
            409,
            str(error),
            title="Hold closed",
            type_=HOLD_CLOSED,
            hold_status=error.hold.status,
        )
    if isinstance(error, HoldNotFound):
        return Problem(404, "no hold for this booking")
    return Problem(409, str(error))


def sweep_interval(hold_ttl: float) -> float:
    """Sweep at least four times per hold lifetime, and never less often than every 5 s."""
    return min(5.0, max(hold_ttl / 4, 0.05))


@contextlib.asynccontextmanager
async def expiry_sweeper(
    expire: Callable[[], Awaitable[int]], *, interval: float, name: str
) -> AsyncIterator[None]:
    """Call `expire` every `interval` seconds in the background, until the block exits."""

    async def run() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                count = await expire()
            except Exception as exc:
                # A busy database now is no reason to stop expiring holds later.
                _log.warning("hold expiry failed; retrying", sweeper=name, error=repr(exc))
            else:
                if count:
                    _log.info("holds expired", sweeper=name, count=count)

    task = asyncio.create_task(run(), name=name)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def _lapsed(hold: Hold, now: datetime) -> bool:
    return hold.status is HoldStatus.HELD and hold.expires_at <= now


def _hold(holds: Table, row: Mapping[str, Any] | RowMapping) -> Hold:
    return Hold(
        booking_id=row["id"],
        resource_id=row["resource_id"],
        quantity=row["quantity"],
        price_cents=row["price_cents"],
        status=HoldStatus(row["status"]),
        expires_at=row["expires_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        details={c.key: row.get(c.key) for c in holds.columns if c.key not in _BASE},
    )


async def _insert_new(session: AsyncSession, holds: Table, values: Mapping[str, Any]) -> bool:
    """Insert the row unless the booking id exists; True when inserted.

    `ON CONFLICT DO NOTHING` rather than a savepoint: pysqlite's savepoints are unreliable,
    and in PostgreSQL it waits for a concurrent insert of the same id to settle.
    """
    dialect = postgresql if locks_rows(session) else sqlite
    result = await session.execute(
        dialect.insert(holds).values(**values).on_conflict_do_nothing(index_elements=["id"])
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


async def _move(
    session: AsyncSession,
    holds: Table,
    booking_id: str,
    source: HoldStatus,
    target: HoldStatus,
    now: datetime,
    *,
    live: bool = False,
) -> Hold | None:
    """Move the hold from `source` to `target` if it is there; the hold after, or None."""
    if source not in SOURCES[target]:
        raise ValueError(f"no transition from {source} to {target}")
    query = update(holds).where(holds.c.id == booking_id, holds.c.status == source)
    if live:
        query = query.where(holds.c.expires_at > now)
    result = await session.execute(query.values(status=target, updated_at=now).returning(*holds.c))
    row = result.mappings().first()
    return None if row is None else _hold(holds, row)
