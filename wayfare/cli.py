"""The `wayfare` command: run the whole system embedded, or one service of it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import aiohttp
import typer
import uvicorn
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from wayfare.demo import DemoFailed, run_demo
from wayfare.kit.bus import EventBus, MemoryBus, bus_for
from wayfare.kit.observability import configure_logging
from wayfare.kit.settings import Settings
from wayfare.services.audit import bootstrap as audit
from wayfare.services.bookings import bootstrap as bookings
from wayfare.services.flights import bootstrap as flights
from wayfare.services.gateway import bootstrap as gateway
from wayfare.services.hotels import bootstrap as hotels
from wayfare.services.notifications import bootstrap as notifications
from wayfare.services.users import bootstrap as users

app = typer.Typer(
    help="Wayfare: a travel-booking platform of Python microservices.", no_args_is_help=True
)
keys_app = typer.Typer(help="The users service's signing keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
console = Console()


@dataclass(frozen=True)
class ServiceEntry:
    create_app: Callable[..., Any]
    migrate: Callable[[Settings], Awaitable[None]] | None = None
    seed: Callable[[Settings], Awaitable[int]] | None = None
    # (queue, topic patterns, max attempts) this service consumes.
    subscriptions: tuple[tuple[str, list[str], int], ...] = ()


# Order matters for `up`: the services first, the gateway that fronts them last.
SERVICES: dict[str, ServiceEntry] = {
    users.NAME: ServiceEntry(users.create_app, users.migrate),
    hotels.NAME: ServiceEntry(hotels.create_app, hotels.migrate, hotels.seed),
    flights.NAME: ServiceEntry(flights.create_app, flights.migrate, flights.seed),
    bookings.NAME: ServiceEntry(bookings.create_app, bookings.migrate),
    notifications.NAME: ServiceEntry(
        notifications.create_app,
        notifications.migrate,
        subscriptions=((notifications.QUEUE, notifications.PATTERNS, notifications.MAX_ATTEMPTS),),
    ),
    audit.NAME: ServiceEntry(
        audit.create_app,
        audit.migrate,
        subscriptions=((audit.QUEUE, audit.PATTERNS, audit.MAX_ATTEMPTS),),
    ),
    gateway.NAME: ServiceEntry(
        gateway.create_app,
        subscriptions=((gateway.QUEUE, gateway.PATTERNS, gateway.MAX_ATTEMPTS),),
    ),
}
BACKENDS = [name for name in SERVICES if name != gateway.NAME]


def _run(coro: Awaitable[Any]) -> Any:
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coro)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux only
        return asyncio.run(coro)  # type: ignore[arg-type]


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to the caller, so several share one process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _uvicorn_config(app_: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app_,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        server_header=False,
        timeout_graceful_shutdown=5,
    )


async def _migrate(settings: Settings, names: list[str]) -> None:
    for name in names:
        entry = SERVICES[name]
        if entry.migrate is not None:
            await entry.migrate(settings)


async def _declare_queues(bus: EventBus, names: list[str]) -> None:
    """Consumers' queues exist before any service publishes, so no early event is missed."""
    for name in names:
        for queue, patterns, max_attempts in SERVICES[name].subscriptions:
            await bus.declare(queue, patterns, max_attempts=max_attempts)


async def _migrate_broker(settings: Settings, names: list[str]) -> None:
    if settings.broker_url is None:
        return
    bus = bus_for(settings.broker_url)
    await bus.start()
    try:
        await _declare_queues(bus, names)
    finally:
        await bus.close()


@app.command()
def up(
    host: Annotated[str, typer.Option(help="address the gateway listens on")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(help="the gateway's port; services take the next ones")
    ] = 8000,
    data_dir: Annotated[Path, typer.Option(help="where the SQLite files live")] = Path(".wayfare"),
) -> None:
    """Run every service in one process, on SQLite and in-process adapters."""
    settings = Settings(data_dir=data_dir)
    if not settings.embedded:
        console.print(
            "[yellow]WAYFARE_DATABASE_URL is set; `up` runs embedded on SQLite anyway. "
            "Use `wayfare serve` for the distributed mode.[/]"
        )
        settings = settings.model_copy(update={"database_url": None})
    log_format = settings.log_format
    if "WAYFARE_LOG_FORMAT" not in os.environ and sys.stderr.isatty():
        log_format = "console"  # a person is watching; JSON is for collectors
    configure_logging(settings.log_level, log_format)
    _run(_up(settings, host, port))


async def _seed(settings: Settings) -> dict[str, int]:
    return {name: await entry.seed(settings) for name, entry in SERVICES.items() if entry.seed}


async def _up(settings: Settings, host: str, port: int) -> None:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.service_token is None:
        # Only the processes of this run need it, so a fresh one each run is enough.
        settings = settings.model_copy(
            update={"service_token": SecretStr(secrets.token_urlsafe(32))}
        )
    await _migrate(settings, BACKENDS)
    admin_password = await users.prepare(settings)
    seeded = await _seed(settings)
    if any(seeded.values()):
        console.print("Seeded demo data: " + ", ".join(f"{n} {k}" for k, n in seeded.items()))
    urls = {name: f"http://127.0.0.1:{port + i + 1}" for i, name in enumerate(BACKENDS)}
    gateway_settings = settings.model_copy(
        update={"upstreams": {name: [url] for name, url in urls.items()}}
    )
    # One in-process bus for every service, as one RabbitMQ would be.
    bus = MemoryBus()
    await bus.start()
    await _declare_queues(bus, list(SERVICES))
    servers: dict[str, tuple[_Server, str]] = {}
    for name in BACKENDS:
        app_ = SERVICES[name].create_app(gateway_settings, bus=bus)
        servers[name] = (
            _Server(_uvicorn_config(app_, "127.0.0.1", int(urls[name].rsplit(":", 1)[1]))),
            urls[name],
        )
    gateway_url = f"http://{host}:{port}"
    servers[gateway.NAME] = (
        _Server(_uvicorn_config(gateway.create_app(gateway_settings, bus=bus), host, port)),
        gateway_url,
    )

    loop = asyncio.get_running_loop()

    def stop() -> None:
        for server, _ in servers.values():
            server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [
        asyncio.create_task(server.serve(), name=name) for name, (server, _) in servers.items()
    ]
    try:
        await _wait_started(servers, tasks)
        _freeze_startup_heap()
        registry = {name: url for name, (_, url) in servers.items()}
        (settings.data_dir / "services.json").write_text(json.dumps(registry, indent=2))
        await _print_status(registry)
        if admin_password:
            console.print(
                f"Admin account created: [bold]{settings.admin_email}[/] / "
                f"[bold]{admin_password}[/] (shown once; set WAYFARE_ADMIN_PASSWORD to choose it)"
            )
        console.print(f"Gateway: [bold]{gateway_url}/api/v1/[/]   Ctrl-C stops everything.")
        await asyncio.gather(*tasks)
    finally:
        stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await bus.close()
        console.print("Wayfare stopped.")


def _freeze_startup_heap() -> None:
    """Move everything built at start out of the collector's sight.

    Without it, full collections keep re-scanning the long-lived objects of start-up
    under load, pausing a busy gateway for hundreds of milliseconds at a time.
    """
    gc.collect()
    gc.freeze()


async def _serve(server: uvicorn.Server) -> None:
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn offers only a flag
        await asyncio.sleep(0.05)
    if server.started:
        _freeze_startup_heap()
    await task


async def _wait_started(
    servers: dict[str, tuple[_Server, str]], tasks: list[asyncio.Task[None]]
) -> None:
    while not all(server.started for server, _ in servers.values()):
        for task in tasks:
            if task.done():
                stopped = task.get_name()
                raise SystemExit(f"{stopped} failed to start (is its port free?)")
        await asyncio.sleep(0.05)


async def _health(session: aiohttp.ClientSession, url: str) -> tuple[str, str]:
    results = []
    for probe in ("healthz", "readyz"):
        try:
            async with session.get(f"{url}/{probe}") as response:
                results.append("ok" if response.status == 200 else str(response.status))
        except (aiohttp.ClientError, TimeoutError):
            results.append("down")
    return results[0], results[1]


async def _print_status(registry: dict[str, str]) -> bool:
    table = Table(title="Wayfare")
    for column in ("service", "url", "alive", "ready"):
        table.add_column(column)
    healthy = True
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as session:
        checks = await asyncio.gather(*(_health(session, url) for url in registry.values()))
    for (name, url), (alive, ready) in zip(registry.items(), checks, strict=True):
        healthy = healthy and alive == ready == "ok"
        colour = "green" if alive == ready == "ok" else "red"
        table.add_row(name, url, f"[{colour}]{alive}[/]", f"[{colour}]{ready}[/]")
    console.print(table)
    return healthy


@app.command()
def serve(
    service: Annotated[str, typer.Argument(help=f"one of: {', '.join(SERVICES)}")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
) -> None:
    """Run one service alone, configured by the WAYFARE_* environment variables."""
    if service not in SERVICES:
        raise typer.BadParameter(f"unknown service {service!r}; one of {', '.join(SERVICES)}")
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    server = uvicorn.Server(_uvicorn_config(SERVICES[service].create_app(settings), host, port))
    _run(_serve(server))


@app.command()
def migrate(
    service: Annotated[str | None, typer.Argument(help="one service; all when omitted")] = None,
) -> None:
    """Apply the database migrations of one service or of all."""
    if service is not None and service not in BACKENDS:
        raise typer.BadParameter(f"unknown service {service!r}; one of {', '.join(BACKENDS)}")
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    names = [service] if service else BACKENDS
    _run(_migrate(settings, names))
    _run(_migrate_broker(settings, [*names, gateway.NAME] if service is None else names))
    if service is None or service == users.NAME:
        password = _run(users.prepare(settings))
        if password:
            console.print(f"Admin account created: {settings.admin_email} / {password}")
    console.print(f"Migrated: {', '.join(names)}")


@app.command()
def status(
    data_dir: Annotated[Path, typer.Option(help="the data dir of `wayfare up`")] = Path(".wayfare"),
) -> None:
    """Show the health of a running system (the one `wayfare up` started)."""
    registry_file = data_dir / "services.json"
    if not registry_file.exists():
        console.print(f"Nothing is running from {data_dir} (no {registry_file}).")
        raise typer.Exit(1)
    registry: dict[str, str] = json.loads(registry_file.read_text())
    if not _run(_print_status(registry)):
        raise typer.Exit(1)


@app.command()
def seed() -> None:
    """Load the demo hotels and flights (only into empty databases)."""
    settings = Settings()
    seeded = _run(_seed(settings))
    console.print("Seeded: " + ", ".join(f"{n} {k}" for k, n in seeded.items()))


@app.command()
def demo(
    url: Annotated[str, typer.Option(help="the gateway of a running system")] = (
        "http://127.0.0.1:8000"
    ),
    admin_password: Annotated[
        str | None,
        typer.Option(envvar="WAYFARE_ADMIN_PASSWORD", help="to show the audit log at the end"),
    ] = None,
) -> None:
    """A traveller's journey through the gateway, step by step, against a running system."""
    try:
        _run(run_demo(url, console, admin_password))
    except (DemoFailed, aiohttp.ClientError) as exc:
        console.print(f"[red]The demo stopped: {exc}[/]")
        raise typer.Exit(1) from exc


@keys_app.command("rotate")
def rotate() -> None:
    """Sign with a new key; the old one stays in the JWKS until its tokens expire."""
    settings = Settings()
    new_kid, deleted = _run(users.rotate_keys(settings))
    console.print(
        f"Signing with {new_kid}" + (f"; deleted {', '.join(deleted)}" if deleted else "")
    )


def main() -> None:  # pragma: no cover
    sys.exit(app())
