"""The hold lifecycle: each transition once per booking, and inventory neither lost nor made.

Run on SQLite and on a real PostgreSQL (where concurrent callers really race).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Integer,
    MetaData,
    String,
    Table,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from wayfare.kit.db import UnitOfWork, create_engine, utcnow
from wayfare.kit.holds import (
    HOLD_CLOSED,
    OPEN,
    SOLD_OUT,
    SOURCES,
    Hold,
    HoldClosed,
    HoldNotFound,
    HoldStatus,
    SoldOut,
    confirm_hold,
    expire_holds,
    expiry_sweeper,
    get_hold,
    hold_problem,
    holds_table,
    place_hold,
    release_hold,
    sweep_interval,
)
from wayfare.kit.settings import Settings
from wayfare.kit.testing.servers import PostgresServer

metadata = MetaData()
holds = holds_table(metadata, Column("note", String(50), nullable=True))
stock = Table(
    "stock",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("capacity", Integer, nullable=False),
    Column("held", Integer, nullable=False),
    Column("confirmed", Integer, nullable=False),
    CheckConstraint("held >= 0 AND confirmed >= 0 AND held + confirmed <= capacity"),
)
TTL = timedelta(minutes=15)
HELD, CONFIRMED, RELEASED, EXPIRED = (
    HoldStatus.HELD,
    HoldStatus.CONFIRMED,
    HoldStatus.RELEASED,
    HoldStatus.EXPIRED,
)


class Stock:
    """The smallest real inventory: one counter row per item."""

    async def take(self, session: AsyncSession, hold: Hold) -> None:
        result = await session.execute(
            update(stock)
            .where(
                stock.c.id == hold.resource_id,
                stock.c.capacity - stock.c.held - stock.c.confirmed >= hold.quantity,
            )
            .values(held=stock.c.held + hold.quantity)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise SoldOut("out of stock")

    async def confirm(self, session: AsyncSession, hold: Hold) -> None:
        await session.execute(
            update(stock)
            .where(stock.c.id == hold.resource_id)
            .values(held=stock.c.held - hold.quantity, confirmed=stock.c.confirmed + hold.quantity)
        )

    async def give_back(self, session: AsyncSession, hold: Hold, from_status: HoldStatus) -> None:
        counter = stock.c.held if from_status is HELD else stock.c.confirmed
        await session.execute(
            update(stock)
            .where(stock.c.id == hold.resource_id)
            .values({counter: counter - hold.quantity})
        )


inventory = Stock()


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'holds.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"holds_{uuid.uuid4().hex[:12]}")
    engine = await _engine_with_tables(url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def pg_engine(postgres: PostgresServer) -> AsyncIterator[AsyncEngine]:
    engine = await _engine_with_tables(postgres.create_database(f"holds_{uuid.uuid4().hex[:12]}"))
    yield engine
    await engine.dispose()


async def _engine_with_tables(url: str) -> AsyncEngine:
    engine = create_engine(url, Settings())
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    return engine


@pytest.fixture
def uow(engine: AsyncEngine) -> UnitOfWork:
    return UnitOfWork(engine)


async def an_item(uow: UnitOfWork, capacity: int = 10) -> str:
    item = str(uuid.uuid4())
    async with uow.begin() as session:
        await session.execute(
            stock.insert().values(id=item, capacity=capacity, held=0, confirmed=0)
        )
    return item


async def counters(uow: UnitOfWork, item: str) -> tuple[int, int]:
    async with uow.begin() as session:
        row = (
            await session.execute(select(stock.c.held, stock.c.confirmed).where(stock.c.id == item))
        ).one()
    return int(row.held), int(row.confirmed)


async def place(
    uow: UnitOfWork,
    item: str,
    booking: str,
    quantity: int = 1,
    *,
    now: datetime | None = None,
) -> tuple[Hold, bool]:
    async with uow.begin() as session:
        outcome = await place_hold(
            session,
            holds,
            inventory,
            booking_id=booking,
            resource_id=item,
            quantity=quantity,
            price_cents=1000 * quantity,
            ttl=TTL,
            details={"note": "window seat"},
            now=now,
        )
    return outcome.hold, outcome.changed


async def confirm(uow: UnitOfWork, booking: str, *, now: datetime | None = None) -> Hold:
    async with uow.begin() as session:
        return (await confirm_hold(session, holds, inventory, booking, now=now)).hold


async def release(uow: UnitOfWork, booking: str) -> Hold:
    async with uow.begin() as session:
        return (await release_hold(session, holds, inventory, booking)).hold


async def expire(uow: UnitOfWork, *, now: datetime, limit: int = 200) -> list[Hold]:
    async with uow.begin() as session:
        return await expire_holds(session, holds, inventory, now=now, limit=limit)


async def read(uow: UnitOfWork, booking: str) -> Hold | None:
    async with uow.begin() as session:
        return await get_hold(session, holds, booking)


def test_the_state_machine_allows_only_its_transitions() -> None:
    assert SOURCES == {
        CONFIRMED: (HELD,),
        RELEASED: (HELD, CONFIRMED),
        EXPIRED: (HELD,),
    }
    assert {HELD, CONFIRMED} == OPEN


async def test_a_hold_takes_inventory_once_per_booking(uow: UnitOfWork) -> None:
    item = await an_item(uow)
    first, placed = await place(uow, item, "b1", 3)
    again, placed_again = await place(uow, item, "b1", 3)
    assert (placed, placed_again) == (True, False)
    assert first.status is HELD
    assert first.details == {"note": "window seat"}
    assert again == first
    assert await counters(uow, item) == (3, 0)


async def test_a_sold_out_hold_leaves_no_row_and_no_inventory_taken(uow: UnitOfWork) -> None:
    item = await an_item(uow, capacity=2)
    with pytest.raises(SoldOut):
        await place(uow, item, "b1", 3)
    assert await read(uow, "b1") is None
    assert await counters(uow, item) == (0, 0)
    # The refusal closed nothing: the booking may try again once there is room.
    _, placed = await place(uow, item, "b1", 2)
    assert placed


async def test_confirm_moves_the_units_to_confirmed_once(uow: UnitOfWork) -> None:
    item = await an_item(uow)
    await place(uow, item, "b1", 2)
    confirmed = await confirm(uow, "b1")
    again = await confirm(uow, "b1")
    assert confirmed.status is CONFIRMED
    assert again.status is CONFIRMED
    assert await counters(uow, item) == (0, 2)
    # A repeated hold request for a confirmed booking answers with the confirmed hold.
    hold, placed = await place(uow, item, "b1", 2)
    assert hold.status is CONFIRMED
    assert not placed


async def test_a_lapsed_hold_is_refused_before_the_sweeper_marks_it(uow: UnitOfWork) -> None:
    item = await an_item(uow)
    hold, _ = await place(uow, item, "b1")
    later = hold.expires_at + timedelta(seconds=1)
    with pytest.raises(HoldClosed):
        await confirm(uow, "b1", now=later)
    with pytest.raises(HoldClosed):
        await place(uow, item, "b1", now=later)
    assert await counters(uow, item) == (1, 0), "only the sweeper gives the units back"


async def test_release_gives_back_what_was_held_or_confirmed(uow: UnitOfWork) -> None:
    item = await an_item(uow)
    await place(uow, item, "held", 2)
    await place(uow, item, "confirmed", 3)
    await confirm(uow, "confirmed")
    assert await counters(uow, item) == (2, 3)
    assert (await release(uow, "held")).status is RELEASED
    assert (await release(uow, "confirmed")).status is RELEASED
    assert await counters(uow, item) == (0, 0)
    assert (await release(uow, "held")).status is RELEASED, "release is idempotent"
    assert await counters(uow, item) == (0, 0)


async def test_a_released_hold_cannot_be_confirmed_or_held_again(uow: UnitOfWork) -> None:
    item = await an_item(uow)
    await place(uow, item, "b1")
    await release(uow, "b1")
    with pytest.raises(HoldClosed):
        await confirm(uow, "b1")
    with pytest.raises(HoldClosed):
        await place(uow, item, "b1")
    assert await counters(uow, item) == (0, 0)


async def test_a_release_before_the_hold_refuses_the_late_hold(uow: UnitOfWork) -> None:
    item = await an_item(uow)
    async with uow.begin() as session:
        outcome = await release_hold(session, holds, inventory, "timed-out")
    assert outcome.hold.status is RELEASED
    assert outcome.hold.resource_id is None
    assert not outcome.changed, "a tombstone changes no inventory"
    with pytest.raises(HoldClosed):
        await place(uow, item, "timed-out")
    assert await counters(uow, item) == (0, 0)


async def test_unknown_bookings_cannot_be_confirmed(uow: UnitOfWork) -> None:
    with pytest.raises(HoldNotFound):
        await confirm(uow, "nobody")


async def test_expiry_gives_back_due_holds_only_and_once(uow: UnitOfWork) -> None:
    item = await an_item(uow)
    now = utcnow()
    await place(uow, item, "due", 2, now=now - TTL - timedelta(seconds=1))
    await place(uow, item, "fresh", 1, now=now)
    await place(uow, item, "confirmed", 3, now=now - TTL - timedelta(seconds=1))
    await confirm(uow, "confirmed", now=now - TTL)
    expired = await expire(uow, now=now)
    assert [hold.booking_id for hold in expired] == ["due"]
    assert expired[0].status is EXPIRED
    assert await counters(uow, item) == (1, 3)
    assert await expire(uow, now=now) == []
    assert await counters(uow, item) == (1, 3)
    # An expired hold is closed: released (a no-op) but never confirmed.
    assert (await release(uow, "due")).status is EXPIRED
    with pytest.raises(HoldClosed):
        await confirm(uow, "due")
    assert await counters(uow, item) == (1, 3)


async def test_expiry_works_in_batches_of_the_limit(uow: UnitOfWork) -> None:
    item = await an_item(uow, capacity=100)
    past = utcnow() - TTL - timedelta(minutes=1)
    for n in range(7):
        await place(uow, item, f"b{n}", now=past)
    now = utcnow()
    assert len(await expire(uow, now=now, limit=5)) == 5
    assert len(await expire(uow, now=now, limit=5)) == 2
    assert await counters(uow, item) == (0, 0)


def test_refusals_map_to_problem_types() -> None:
    closed = Hold(
        booking_id="b1",
        resource_id=None,
        quantity=0,
        price_cents=0,
        status=RELEASED,
        expires_at=utcnow(),
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    assert (hold_problem(SoldOut("full")).status, hold_problem(SoldOut()).type) == (409, SOLD_OUT)
    assert hold_problem(HoldClosed(closed)).type == HOLD_CLOSED
    assert hold_problem(HoldNotFound("b1")).status == 404


def test_the_sweep_runs_several_times_per_hold_lifetime() -> None:
    assert sweep_interval(900) == 5.0
    assert sweep_interval(1) == 0.25


async def test_the_sweeper_runs_until_its_block_ends() -> None:
    calls = 0
    third_call = asyncio.Event()

    async def expire_some() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database busy")  # logged, and the sweeper goes on
        if calls == 3:
            third_call.set()
        return 1

    async with expiry_sweeper(expire_some, interval=0.01, name="test-sweeper"):
        await asyncio.wait_for(third_call.wait(), 2)
    stopped_at = calls
    await asyncio.sleep(0.05)
    assert calls == stopped_at


async def test_concurrent_holds_on_postgres_never_oversell(pg_engine: AsyncEngine) -> None:
    uow = UnitOfWork(pg_engine)
    item = await an_item(uow, capacity=25)

    async def attempt(n: int) -> bool:
        try:
            await place(uow, item, f"b{n}")
        except SoldOut:
            return False
        return True

    results = await asyncio.gather(*(attempt(n) for n in range(60)))
    assert sum(results) == 25
    assert await counters(uow, item) == (25, 0)


async def test_a_release_racing_its_hold_on_postgres_never_leaks(pg_engine: AsyncEngine) -> None:
    """Whichever lands first, nothing stays held for a booking that was released."""
    uow = UnitOfWork(pg_engine)
    item = await an_item(uow, capacity=1000)

    async def hold_quietly(booking: str) -> None:
        # HoldClosed: the release came first and left its tombstone.
        with contextlib.suppress(HoldClosed):
            await place(uow, item, booking)

    bookings = [f"b{n}" for n in range(40)]
    await asyncio.gather(*(hold_quietly(b) for b in bookings), *(release(uow, b) for b in bookings))
    for booking in bookings:
        hold = await read(uow, booking)
        assert hold is not None
        assert hold.status is RELEASED
    assert await counters(uow, item) == (0, 0)


async def test_concurrent_sweepers_on_postgres_expire_each_hold_once(
    pg_engine: AsyncEngine,
) -> None:
    uow = UnitOfWork(pg_engine)
    items = [await an_item(uow, capacity=100) for _ in range(3)]
    past = utcnow() - TTL - timedelta(minutes=1)
    for n in range(90):
        await place(uow, items[n % 3], f"b{n:02}", now=past)
    batches = await asyncio.gather(*(expire(uow, now=utcnow(), limit=20) for _ in range(6)))
    expired = [hold.booking_id for batch in batches for hold in batch]
    expired += [hold.booking_id for hold in await expire(uow, now=utcnow())]
    assert sorted(expired) == [f"b{n:02}" for n in range(90)]
    for item in items:
        assert await counters(uow, item) == (0, 0)
    async with uow.begin() as session:
        statuses = (
            await session.execute(select(holds.c.status, func.count()).group_by(holds.c.status))
        ).all()
    assert {status: int(n) for status, n in statuses} == {"EXPIRED": 90}
