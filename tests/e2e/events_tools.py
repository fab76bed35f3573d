"""Crash tests of the event pipeline: services as killable processes, and what they left.

A `Deployment` is one test's own database and RabbitMQ vhost with the services started
on them as `wayfare serve` subprocesses, which a test may SIGKILL and start again; the
functions below read the outcome (`audit.events`, `users.outbox`) straight from SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from tests.e2e.system import stop, wayfare
from wayfare.kit.bus import AmqpBus, Event, EventBus
from wayfare.kit.settings import Settings
from wayfare.kit.testing.servers import PostgresServer, RabbitMQServer, free_port
from wayfare.services.audit import bootstrap as audit
from wayfare.services.users import bootstrap as users

__all__ = [
    "PASSWORD",
    "Deployment",
    "Registration",
    "ServiceProcess",
    "app_stopped",
    "audit_counts",
    "audit_log_locked",
    "audited_ids",
    "blocked_writers",
    "deployment",
    "in_memory",
    "pending_in_outbox",
    "postgres_stopped",
    "publish_in_chunks",
    "register",
    "sample_events",
    "user_created_per_subject",
    "wait_for",
]

T = TypeVar("T")

PASSWORD = "a long enough passphrase"
SERVICES = ("users", "audit")
READY_WITHIN = 60.0


@dataclass
class ServiceProcess:
    """One `wayfare serve NAME` subprocess, in a session of its own so a kill reaches it all."""

    name: str
    url: str
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hook runs, no connection is closed politely."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def logs(self) -> str:
        return f"--- {self.log.name}\n{self.log.read_text(errors='replace')[-4000:]}"


@dataclass
class Deployment:
    """A test's own database and vhost; the services it starts are stopped at the end."""

    data_dir: Path
    database_url: str
    broker_url: str
    env: dict[str, str]
    ports: dict[str, int]
    engine: AsyncEngine
    started: list[ServiceProcess] = field(default_factory=list)

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    async def start(self, service: str) -> ServiceProcess:
        """Start `service` on its fixed port and return once its /readyz answers 200."""
        log = self.data_dir / f"{service}-{len(self.started)}.log"
        process = wayfare(
            "serve", service, "--port", str(self.ports[service]), env=self.env, log=log
        )
        running = ServiceProcess(service, self.url(service), log, process)
        self.started.append(running)
        deadline = time.monotonic() + READY_WITHIN
        async with httpx.AsyncClient(timeout=1) as client:
            while time.monotonic() < deadline:
                if not running.alive:
                    raise RuntimeError(
                        f"{service} exited with {process.returncode}\n{running.logs()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{running.url}/readyz")).status_code == 200:
                        return running
                await asyncio.sleep(0.1)
        raise TimeoutError(f"{service} not ready within {READY_WITHIN} s\n{running.logs()}")

    def logs(self) -> str:
        return "\n".join(service.logs() for service in self.started)

    def stop_all(self) -> None:
        for service in self.started:
            stop(service.process, signal.SIGTERM)


def _add_vhost(rabbitmq: RabbitMQServer, vhost: str) -> str:
    rabbitmq.ctl("add_vhost", vhost)
    rabbitmq.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    return f"{rabbitmq.url.rstrip('/')}/{vhost}"


@contextlib.asynccontextmanager
async def deployment(
    data_dir: Path, postgres: PostgresServer, rabbitmq: RabbitMQServer
) -> AsyncIterator[Deployment]:
    """A fresh database (migrated, without an admin) and vhost; no service started yet."""
    name = f"crash_{uuid.uuid4().hex[:12]}"
    database_url = await asyncio.to_thread(postgres.create_database, name)
    broker_url = await asyncio.to_thread(_add_vhost, rabbitmq, name)
    ports = {service: free_port() for service in SERVICES}
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYFARE_")}
    env.update(
        {
            "WAYFARE_DATA_DIR": str(data_dir),
            "WAYFARE_DATABASE_URL": database_url,
            "WAYFARE_BROKER_URL": broker_url,
            # Audit verifies tokens only on its HTTP API; ingestion never fetches the JWKS.
            "WAYFARE_UPSTREAMS": json.dumps({"users": [f"http://127.0.0.1:{ports['users']}"]}),
            "WAYFARE_LOG_LEVEL": "warning",
        }
    )
    # In this process, which saves a `wayfare migrate` start per test; and only these two
    # services, with no admin account, so the outbox holds the test's events alone.
    settings = Settings(database_url=database_url, broker_url=broker_url)
    await users.migrate(settings)
    await audit.migrate(settings)
    async with AmqpBus(broker_url) as bus:
        # As `wayfare migrate` does: audit's queue exists before anything is published.
        await bus.declare(audit.QUEUE, audit.PATTERNS, max_attempts=audit.MAX_ATTEMPTS)
    engine = create_async_engine(database_url, poolclass=NullPool)
    running = Deployment(data_dir, database_url, broker_url, env, ports, engine)
    try:
        yield running
    finally:
        await asyncio.to_thread(running.stop_all)
        await engine.dispose()
        with contextlib.suppress(subprocess.SubprocessError):
            await asyncio.to_thread(rabbitmq.ctl, "delete_vhost", name)


@contextlib.asynccontextmanager
async def app_stopped(rabbitmq: RabbitMQServer) -> AsyncIterator[None]:
    """RabbitMQ's node up but its application (and AMQP listener) stopped, for the block."""
    await asyncio.to_thread(rabbitmq.stop_app)
    try:
        yield
    finally:
        await asyncio.to_thread(rabbitmq.start_app)


@contextlib.asynccontextmanager
async def postgres_stopped(postgres: PostgresServer) -> AsyncIterator[None]:
    """PostgreSQL shut down (fast mode) for the block; the session's server is restarted."""
    await asyncio.to_thread(postgres.stop)
    try:
        yield
    finally:
        await asyncio.to_thread(postgres.start)


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    what: str,
    within: float = 60.0,
    every: float = 0.1,
    show: Callable[[T], str] = repr,
    logs: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until `done(value)`; fail after `within` s with the last value and logs."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            message = f"{what}: not reached within {within} s; last seen {show(value)}"
            raise AssertionError(message if logs is None else f"{message}\n{logs()}")
        await asyncio.sleep(every)


def in_memory(read: Callable[[], T]) -> Callable[[], Awaitable[T]]:
    """A `wait_for` probe of something this process computes, such as a tally of replies."""

    async def probe() -> T:
        return read()

    return probe


def sample_events(count: int, *, type_: str = "crash.probe") -> list[Event]:
    return [Event.new(type=type_, source="/tests/e2e/crash", data={"n": n}) for n in range(count)]


async def publish_in_chunks(bus: EventBus, events: Sequence[Event], *, chunk: int = 1000) -> None:
    for start in range(0, len(events), chunk):
        await bus.publish_many(events[start : start + chunk])


@dataclass(frozen=True)
class Registration:
    """One registration attempt: its HTTP status (0: no answer), the user's id, its timing."""

    status: int
    user_id: str | None
    sent_at: float
    answered_at: float


async def register(client: httpx.AsyncClient, users_url: str) -> Registration:
    email = f"crash-{uuid.uuid4().hex[:12]}@example.com"
    sent_at = time.monotonic()
    try:
        response = await client.post(
            f"{users_url}/auth/register",
            json={"email": email, "password": PASSWORD, "name": "Crash Test"},
        )
    except httpx.TransportError:
        return Registration(0, None, sent_at, time.monotonic())
    user_id = response.json()["id"] if response.status_code == 201 else None
    return Registration(response.status_code, user_id, sent_at, time.monotonic())


async def audit_counts(engine: AsyncEngine) -> tuple[int, int]:
    """Rows in the audit log, and distinct event ids among them."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(text("SELECT count(*), count(DISTINCT id) FROM audit.events"))
        ).one()
    return int(row[0]), int(row[1])


async def audited_ids(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set((await conn.execute(text("SELECT id FROM audit.events"))).scalars())


async def user_created_per_subject(engine: AsyncEngine) -> dict[str, int]:
    """How many `user.created` events the audit log holds for each user id."""
    query = text(
        "SELECT subject, count(*) FROM audit.events WHERE type = 'user.created' GROUP BY subject"
    )
    async with engine.connect() as conn:
        return {str(subject): int(n) for subject, n in await conn.execute(query)}


@contextlib.asynccontextmanager
async def audit_log_locked(engine: AsyncEngine) -> AsyncIterator[None]:
    """`audit.events` locked against writes (reads go on) until the block ends."""
    async with engine.begin() as conn:
        await conn.execute(text("LOCK TABLE audit.events IN SHARE MODE"))
        yield


async def blocked_writers(engine: AsyncEngine) -> int:
    """Sessions of this database, other than ours, waiting for a lock: blocked writers."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
    )
    async with engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def pending_in_outbox(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT count(*) FROM users.outbox WHERE published_at IS NULL")
        )
        return int(result.scalar_one())
