"""The saga runner: steps in order, compensation in reverse, retries, resumption, one driver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from wayfare.kit.db import UnitOfWork, create_engine
from wayfare.kit.saga import SagaDefinition, SagaRunner, SagaState, Step, StepRefused, saga_tables
from wayfare.kit.settings import Settings


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'saga.db'}", Settings())
    metadata = MetaData()
    saga_tables(metadata)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield engine
    await engine.dispose()


class Trip:
    """Two steps whose actions and compensations write to a journal; failures on demand."""

    def __init__(self) -> None:
        self.journal: list[str] = []
        self.outcome: list[str] = []
        self.refuse: set[str] = set()
        self.transient: dict[str, int] = {}

    def step(self, name: str) -> Step:
        async def action(state: SagaState) -> Mapping[str, Any]:
            if self.transient.get(name, 0) > 0:
                self.transient[name] -= 1
                raise ConnectionError(f"{name} unreachable")
            if name in self.refuse:
                raise StepRefused(f"{name} sold out")
            self.journal.append(f"do {name}")
            return {name: True}

        async def undo(state: SagaState) -> None:
            self.journal.append(f"undo {name}")

        return Step(name, action, undo, timeout=2, max_attempts=3)

    def definition(self) -> SagaDefinition:
        async def completed(session: AsyncSession, state: SagaState) -> None:
            self.outcome.append(f"completed {sorted(k for k in state.data if k != 'n')}")

        async def failed(session: AsyncSession, state: SagaState) -> None:
            self.outcome.append(f"failed: {state.failure_reason}")

        return SagaDefinition(
            kind="trip",
            steps=[self.step("hotel"), self.step("flight")],
            on_completed=completed,
            on_failed=failed,
        )


def runner(engine: AsyncEngine, trip: Trip, **options: Any) -> SagaRunner:
    return SagaRunner(UnitOfWork(engine), {"trip": trip.definition()}, **options)


async def start(saga: SagaRunner, saga_id: str) -> None:
    async with saga.uow.begin() as session:
        await saga.begin(session, saga_id, "trip", {"n": 1})
    saga.kick(saga_id)


async def test_steps_run_in_order_and_their_outputs_reach_the_end(engine: AsyncEngine) -> None:
    trip = Trip()
    saga = runner(engine, trip)
    await start(saga, "a")
    assert await saga.wait("a", within=5)
    assert trip.journal == ["do hotel", "do flight"]
    assert trip.outcome == ["completed ['flight', 'hotel']"]
    state = await saga.state("a")
    assert state is not None
    assert state.status == "COMPLETED"


async def test_a_refusal_compensates_the_steps_done_in_reverse(engine: AsyncEngine) -> None:
    trip = Trip()
    trip.refuse.add("flight")
    saga = runner(engine, trip)
    await start(saga, "b")
    assert await saga.wait("b", within=5)
    assert trip.journal == ["do hotel", "undo hotel"]
    assert trip.outcome == ["failed: flight sold out"]


async def test_a_transient_failure_is_retried_and_then_succeeds(engine: AsyncEngine) -> None:
    trip = Trip()
    trip.transient["flight"] = 2  # fails twice, the third attempt goes through
    saga = runner(engine, trip)
    await start(saga, "c")
    assert await saga.wait("c", within=10)
    assert trip.journal == ["do hotel", "do flight"]
    assert trip.outcome[0].startswith("completed")


async def test_a_step_that_keeps_failing_is_compensated(engine: AsyncEngine) -> None:
    trip = Trip()
    trip.transient["flight"] = 99
    saga = runner(engine, trip)
    await start(saga, "d")
    assert await saga.wait("d", within=10)
    assert trip.journal == ["do hotel", "undo hotel"]
    assert trip.outcome == ["failed: flight kept failing: ConnectionError: flight unreachable"]


async def test_an_unfinished_saga_is_resumed_by_another_runner(engine: AsyncEngine) -> None:
    trip = Trip()
    first = runner(engine, trip, lease=0.5)
    async with first.uow.begin() as session:
        await first.begin(session, "e", "trip", {"n": 1})
    # The first runner never drives it (as if it died right after the commit).
    second = runner(engine, trip, lease=0.5, recovery_interval=0.1)
    await second.start()
    try:
        assert await second.wait("e", within=5)
    finally:
        await second.close()
    assert trip.journal == ["do hotel", "do flight"]


async def test_only_one_of_two_runners_drives_a_saga(engine: AsyncEngine) -> None:
    trip = Trip()
    one, two = runner(engine, trip), runner(engine, trip)
    async with one.uow.begin() as session:
        await one.begin(session, "f", "trip", {"n": 1})
    one.kick("f")
    two.kick("f")
    assert await one.wait("f", within=5)
    await asyncio.sleep(0.2)
    assert trip.journal == ["do hotel", "do flight"], "a step ran twice"
    assert len(trip.outcome) == 1
