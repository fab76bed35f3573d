"""Sagas: long-running transactions as persisted steps with compensations.

A saga is declared as ordered steps, each an action with its compensation beside it.
Its state and a log of every attempt live in the service's database, and each
transition is committed before the next call (transaction splitting), so a crash
resumes at the step it reached. Transient failures (timeouts, connection errors, 5xx)
retry with exponential backoff; a `StepRefused` (a business "no", such as sold out)
does not, and starts the compensations of the steps already done, in reverse.
Compensations are retried until they succeed.

Exactly one runner drives a saga at a time: a runner takes a lease on the saga's row
with a conditional update and renews it while it works; sagas whose lease has lapsed
(their runner died) are picked up by any replica's recovery loop. While it holds the
lease, the runner is the only writer of the row, so it carries the saga's state from one
step to the next in memory instead of reading it back, and every transition it commits
also renews the lease (a separate renewal is only needed when the last one is stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from wayfare.kit.db import UnitOfWork
from wayfare.kit.db.types import UtcDateTime, utcnow
from wayfare.kit.observability import get_logger

__all__ = [
    "SagaDefinition",
    "SagaRunner",
    "SagaState",
    "Step",
    "StepRefused",
    "saga_tables",
    "saga_timeline",
]

_log = get_logger("wayfare.saga")

RUNNING, COMPENSATING, COMPLETED, FAILED = "RUNNING", "COMPENSATING", "COMPLETED", "FAILED"
_ACTIVE = (RUNNING, COMPENSATING)


class StepRefused(Exception):
    """A business refusal: retrying cannot help, the saga compensates."""


def saga_tables(metadata: MetaData) -> tuple[Table, Table]:
    sagas = Table(
        "sagas",
        metadata,
        Column("id", String(100), primary_key=True),
        Column("kind", String(100), nullable=False),
        Column("status", String(20), nullable=False),
        # Forward: the next step to run. Compensating: the next step to undo.
        Column("step", Integer, nullable=False),
        Column("data", JSON, nullable=False),
        Column("failure_reason", Text, nullable=True),
        Column("lease_owner", String(64), nullable=True),
        Column("lease_until", UtcDateTime(), nullable=True),
        Column("created_at", UtcDateTime(), nullable=False),
        Column("updated_at", UtcDateTime(), nullable=False),
        Index("ix_sagas_active", "status", "lease_until"),
    )
    steps = Table(
        "saga_steps",
        metadata,
        Column("seq", Integer, primary_key=True, autoincrement=True),
        Column("saga_id", String(100), nullable=False),
        Column("step", String(100), nullable=False),
        Column("phase", String(20), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("outcome", String(20), nullable=False),
        Column("error", Text, nullable=True),
        Column("started_at", UtcDateTime(), nullable=False),
        Column("finished_at", UtcDateTime(), nullable=False),
        Index("ix_saga_steps_saga", "saga_id", "seq"),
    )
    return sagas, steps


_sagas, _steps = saga_tables(MetaData())


@dataclass(frozen=True)
class SagaState:
    id: str
    kind: str
    status: str
    step: int
    data: dict[str, Any]
    failure_reason: str | None


Action = Callable[[SagaState], Awaitable[Mapping[str, Any] | None]]
Compensation = Callable[[SagaState], Awaitable[None]]
Finish = Callable[[AsyncSession, SagaState], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    name: str
    action: Action
    compensation: Compensation | None = None
    timeout: float = 10.0
    max_attempts: int = 4


@dataclass(frozen=True)
class SagaDefinition:
    kind: str
    steps: Sequence[Step]
    # Called in the transaction that ends the saga, so the outcome and its events commit together.
    on_completed: Finish
    on_failed: Finish


@dataclass
class _Backoff:
    base: float = 0.1
    cap: float = 5.0

    def delay(self, attempt: int) -> float:
        return float(min(self.cap, self.base * 2 ** (attempt - 1)))


@dataclass
class SagaRunner:
    uow: UnitOfWork
    definitions: Mapping[str, SagaDefinition]
    lease: float = 10.0
    recovery_interval: float = 1.0
    backoff: _Backoff = field(default_factory=_Backoff)
    owner: str = field(default_factory=lambda: secrets.token_hex(8))
    _running: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _finished: dict[str, asyncio.Event] = field(default_factory=dict)
    # Loop time of the last lease renewal committed for each saga driven here.
    _renewed: dict[str, float] = field(default_factory=dict)
    _recovery: asyncio.Task[None] | None = None

    # -- starting sagas ------------------------------------------------------------

    async def begin(
        self, session: AsyncSession, saga_id: str, kind: str, data: Mapping[str, Any]
    ) -> None:
        """Create the saga in the caller's transaction; `kick` it after the commit."""
        if kind not in self.definitions:
            raise ValueError(f"unknown saga kind {kind!r}")
        now = utcnow()
        await session.execute(
            _sagas.insert().values(
                id=saga_id,
                kind=kind,
                status=RUNNING,
                step=0,
                data=dict(data),
                created_at=now,
                updated_at=now,
            )
        )

    def kick(self, saga_id: str) -> None:
        """Drive the saga now in this process (no-op if it is already being driven here)."""
        task = self._running.get(saga_id)
        if task is None or task.done():
            self._running[saga_id] = asyncio.create_task(self._drive(saga_id), name=saga_id)

    async def wait(self, saga_id: str, within: float) -> bool:
        """True when the saga finished within `within` seconds (here or in another process)."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            # Set by the local driver when it stops; polling covers a driver elsewhere.
            event = self._finished.setdefault(saga_id, asyncio.Event())
            state = await self.state(saga_id)
            if state is not None and state.status not in _ACTIVE:
                return True
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(remaining, 0.5))

    async def state(self, saga_id: str) -> SagaState | None:
        async with self.uow.begin() as session:
            row = (await session.execute(select(_sagas).where(_sagas.c.id == saga_id))).first()
        return None if row is None else _state(row)

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        self._recovery = asyncio.create_task(self._recover_forever(), name="saga-recovery")

    async def close(self) -> None:
        tasks = [t for t in [self._recovery, *self._running.values()] if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._running.clear()
        self._recovery = None

    async def _recover_forever(self) -> None:
        while True:
            try:
                await self.recover()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("saga recovery pass failed", error=repr(exc))
            await asyncio.sleep(self.recovery_interval)

    async def recover(self) -> int:
        """Start driving every unfinished saga nobody holds a lease on; returns how many."""
        now = utcnow()
        async with self.uow.begin() as session:
            ids = (
                (
                    await session.execute(
                        select(_sagas.c.id)
                        .where(
                            _sagas.c.status.in_(_ACTIVE),
                            or_(_sagas.c.lease_until.is_(None), _sagas.c.lease_until < now),
                        )
                        .order_by(_sagas.c.created_at)
                        .limit(100)
                    )
                )
                .scalars()
                .all()
            )
        started = 0
        for saga_id in ids:
            if saga_id not in self._running or self._running[saga_id].done():
                self.kick(saga_id)
                started += 1
        return started

    # -- driving ---------------------------------------------------------------------

    async def _take_lease(self, saga_id: str) -> SagaState | None:
        """The saga's state if this runner now holds its lease; None if it is not to be driven."""
        now, renewed = utcnow(), self._now()
        async with self.uow.begin() as session:
            row = (
                await session.execute(
                    update(_sagas)
                    .where(
                        _sagas.c.id == saga_id,
                        _sagas.c.status.in_(_ACTIVE),
                        or_(
                            _sagas.c.lease_until.is_(None),
                            _sagas.c.lease_until < now,
                            _sagas.c.lease_owner == self.owner,
                        ),
                    )
                    .values(lease_owner=self.owner, lease_until=now + timedelta(seconds=self.lease))
                    .returning(*_sagas.c)
                )
            ).first()
        if row is None:
            return None
        self._renewed[saga_id] = renewed
        return _state(row)

    async def _drive(self, saga_id: str) -> None:
        heartbeat: asyncio.Task[None] | None = None
        try:
            state = await self._take_lease(saga_id)
            if state is None:
                return
            heartbeat = asyncio.create_task(self._heartbeat(saga_id, asyncio.current_task()))
            # Each transition returns the state it committed; None once the saga is over.
            while state is not None and state.status in _ACTIVE:
                definition = self.definitions[state.kind]
                if state.status == RUNNING:
                    state = await self._forward(definition, state)
                else:
                    state = await self._compensate(definition, state)
        except asyncio.CancelledError:
            raise
        except _LeaseLost:
            _log.info("saga lease lost to another runner", saga_id=saga_id)
        except Exception:
            # Leave the saga to the recovery loop: its lease lapses and it is driven again.
            _log.exception("saga runner failed", saga_id=saga_id)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            self._running.pop(saga_id, None)
            self._renewed.pop(saga_id, None)
            self._finished.setdefault(saga_id, asyncio.Event()).set()
            self._finished.pop(saga_id, None)

    async def _heartbeat(self, saga_id: str, driver: asyncio.Task[Any] | None) -> None:
        """Keep the lease while a step is slow; stop the driver if another runner took it."""
        while True:
            await asyncio.sleep(self.lease / 3)
            try:
                await self._renew(saga_id)
            except _LeaseLost:
                if driver is not None:
                    driver.cancel()
                return
            except Exception as exc:
                _log.warning("saga lease renewal failed", saga_id=saga_id, error=repr(exc))

    async def _forward(self, definition: SagaDefinition, state: SagaState) -> SagaState | None:
        """Run the next step (or finish); the state committed after it, None when finished."""
        if state.step >= len(definition.steps):
            await self._finish(definition, state, COMPLETED)
            return None
        step = definition.steps[state.step]
        attempt = 0
        while True:
            attempt += 1
            started = utcnow()
            try:
                await self._keep_lease(state.id)
                async with asyncio.timeout(step.timeout):
                    output = await step.action(state)
            except StepRefused as refusal:
                return await self._advance(
                    state,
                    step,
                    "action",
                    attempt,
                    started,
                    "refused",
                    str(refusal),
                    status=COMPENSATING,
                    step_index=state.step - 1,
                    reason=str(refusal),
                )
            except (_LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:
                error = _describe(exc)
                if attempt >= step.max_attempts:
                    return await self._advance(
                        state,
                        step,
                        "action",
                        attempt,
                        started,
                        "failed",
                        error,
                        status=COMPENSATING,
                        step_index=state.step - 1,
                        reason=f"{step.name} kept failing: {error}",
                    )
                await self._log_attempt(
                    state.id, step.name, "action", attempt, started, "retry", error
                )
                await asyncio.sleep(self.backoff.delay(attempt))
                continue
            data = {**state.data, **(output or {})}
            return await self._advance(
                state,
                step,
                "action",
                attempt,
                started,
                "ok",
                None,
                status=RUNNING,
                step_index=state.step + 1,
                data=data,
            )

    async def _compensate(self, definition: SagaDefinition, state: SagaState) -> SagaState | None:
        """Undo the current step (or finish); the state committed after, None when finished."""
        if state.step < 0:
            await self._finish(definition, state, FAILED)
            return None
        step = definition.steps[state.step]
        if step.compensation is None:
            return await self._move(state, step_index=state.step - 1)
        attempt = 0
        while True:
            attempt += 1
            started = utcnow()
            try:
                await self._keep_lease(state.id)
                async with asyncio.timeout(step.timeout):
                    await step.compensation(state)
            except (_LeaseLost, asyncio.CancelledError):
                raise
            except Exception as exc:
                await self._log_attempt(
                    state.id, step.name, "compensation", attempt, started, "retry", _describe(exc)
                )
                await asyncio.sleep(self.backoff.delay(attempt))
                continue
            return await self._advance(
                state,
                step,
                "compensation",
                attempt,
                started,
                "ok",
                None,
                status=COMPENSATING,
                step_index=state.step - 1,
            )

    async def _finish(self, definition: SagaDefinition, state: SagaState, status: str) -> None:
        async with self.uow.begin() as session:
            result = await session.execute(
                update(_sagas)
                .where(
                    _sagas.c.id == state.id,
                    _sagas.c.lease_owner == self.owner,
                    _sagas.c.status == state.status,
                )
                .values(status=status, lease_owner=None, lease_until=None, updated_at=utcnow())
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise _LeaseLost
            finished = SagaState(
                state.id, state.kind, status, state.step, state.data, state.failure_reason
            )
            hook = definition.on_completed if status == COMPLETED else definition.on_failed
            await hook(session, finished)

    async def _advance(
        self,
        state: SagaState,
        step: Step,
        phase: str,
        attempt: int,
        started: datetime,
        outcome: str,
        error: str | None,
        *,
        status: str,
        step_index: int,
        data: dict[str, Any] | None = None,
        reason: str | None = None,
    ) -> SagaState:
        """Record the attempt and move the saga on (renewing its lease), in one transaction."""
        now, renewed = utcnow(), self._now()
        values: dict[str, Any] = {
            "status": status,
            "step": step_index,
            "updated_at": now,
            "lease_until": now + timedelta(seconds=self.lease),
        }
        if data is not None:
            # As the JSON column gives it back, so the state carried on is the stored one.
            data = json.loads(json.dumps(data))
            values["data"] = data
        if reason is not None:
            values["failure_reason"] = reason
        async with self.uow.begin() as session:
            result = await session.execute(
                update(_sagas)
                .where(_sagas.c.id == state.id, _sagas.c.lease_owner == self.owner)
                .values(**values)
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise _LeaseLost
            await session.execute(
                _steps.insert().values(
                    saga_id=state.id,
                    step=step.name,
                    phase=phase,
                    attempt=attempt,
                    outcome=outcome,
                    error=error,
                    started_at=started,
                    finished_at=utcnow(),
                )
            )
        self._renewed[state.id] = renewed
        return SagaState(
            id=state.id,
            kind=state.kind,
            status=status,
            step=step_index,
            data=state.data if data is None else data,
            failure_reason=state.failure_reason if reason is None else reason,
        )

    async def _move(self, state: SagaState, *, step_index: int) -> SagaState:
        now, renewed = utcnow(), self._now()
        async with self.uow.begin() as session:
            result = await session.execute(
                update(_sagas)
                .where(_sagas.c.id == state.id, _sagas.c.lease_owner == self.owner)
                .values(
                    step=step_index,
                    updated_at=now,
                    lease_until=now + timedelta(seconds=self.lease),
                )
            )
            if result.rowcount != 1:  # type: ignore[attr-defined]
                raise _LeaseLost
        self._renewed[state.id] = renewed
        return SagaState(
            state.id, state.kind, state.status, step_index, state.data, state.failure_reason
        )

    async def _log_attempt(
        self,
        saga_id: str,
        step: str,
        phase: str,
        attempt: int,
        started: datetime,
        outcome: str,
        error: str | None,
    ) -> None:
        async with self.uow.begin() as session:
            await session.execute(
                _steps.insert().values(
                    saga_id=saga_id,
                    step=step,
                    phase=phase,
                    attempt=attempt,
                    outcome=outcome,
                    error=error,
                    started_at=started,
                    finished_at=utcnow(),
                )
            )

    async def _keep_lease(self, saga_id: str) -> None:
        """Before a step: renew the lease unless a transition renewed it a moment ago.

        "A moment" is the heartbeat's period, a third of the lease: a step then starts
        with as much lease left as the heartbeat guarantees while it runs, and a lease
        lost to another runner would have failed that transition's conditional update.
        """
        renewed = self._renewed.get(saga_id)
        if renewed is None or self._now() - renewed > self.lease / 3:
            await self._renew(saga_id)

    async def _renew(self, saga_id: str) -> None:
        now, renewed = utcnow(), self._now()
        async with self.uow.begin() as session:
            result = await session.execute(
                update(_sagas)
                .where(_sagas.c.id == saga_id, _sagas.c.lease_owner == self.owner)
                .values(lease_until=now + timedelta(seconds=self.lease))
            )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise _LeaseLost
        if saga_id in self._running:
            self._renewed[saga_id] = renewed

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


class _LeaseLost(Exception):
    pass


def _state(row: Any) -> SagaState:
    return SagaState(
        id=row.id,
        kind=row.kind,
        status=row.status,
        step=row.step,
        data=dict(row.data),
        failure_reason=row.failure_reason,
    )


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:500]


async def saga_timeline(session: AsyncSession, saga_ids: Sequence[str]) -> list[dict[str, Any]]:
    """Every attempt of the sagas, oldest first, for a timeline view."""
    rows = await session.execute(
        select(_steps).where(_steps.c.saga_id.in_(list(saga_ids))).order_by(_steps.c.seq)
    )
    return [
        {
            "saga": row.saga_id,
            "step": row.step,
            "phase": row.phase,
            "attempt": row.attempt,
            "outcome": row.outcome,
            "error": row.error,
            "started_at": row.started_at,
            "finished_at": row.finished_at,
        }
        for row in rows
    ]
