"""What a booking costs end to end: N concurrent trips through the gateway, per mode and load.

    uv run python bench/bookings.py [--trips 300] [--concurrency 1,8,32,64]
        [--mode embedded,distributed] [--duration-cap 120]
        [--profile cprofile|py-spy --profile-at C]

For each mode (`wayfare up` on SQLite; or `wayfare serve` per service on PostgreSQL, Redis
and RabbitMQ behind one gateway) and each concurrency level C, C closed-loop workers book
`--trips` trips through the gateway (`POST /api/v1/bookings`, then polling
`GET /api/v1/bookings/{id}` every `--poll-interval` s while it is PENDING). A trip's time
runs from sending the POST to seeing CONFIRMED or FAILED. Before the trips, the same workers
hammer `GET /api/v1/users/me` for `--baseline-seconds`: the gateway and token check with
almost nothing behind them, so bookings/s can be read as a ratio of that.

The system runs on one core and this client on the other (`taskset`-style affinity, printed
at start), so the client does not steal CPU from what it measures; the busy share of each
core during a level is printed beside the figures, with the share taken by processes this
run did not start ("others": on a shared machine, throughput and latency are only as good
as that is low). "CPU ms/bk" is the CPU the system's processes spent per booking, from
/proc, and its ratio to the CPU per `GET /me`: both hold up on a busy machine, and
1000 / (CPU ms/bk) is the bookings/s the system's core could sustain alone.

Every level gets a fresh hotel and flight with a room and a seat per trip, so trips
confirm unless something is wrong.

After the levels of a mode, the invariants: every trip reached a final state (lost 0), no
half-done trip (a CONFIRMED booking has both holds CONFIRMED; a FAILED one has no hold still
HELD or CONFIRMED), and each inventory is conserved (`/internal/inventory/check`).

`--profile cprofile` runs `wayfare up` under cProfile (main thread CPU time), recording
the bookings of the level at `--profile-at` concurrency only; `--profile py-spy` attaches
py-spy to it for the level at `--profile-at` concurrency (`uv run --with py-spy python ...`),
which also sees the aiosqlite threads that cProfile cannot. Both print a summary at the end.

Every process started here is stopped, and every temporary directory removed, on exit,
failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/bookings.py` puts bench/, not the repo, first
    sys.path.insert(0, str(REPO))

from bench.bookings_profile import summarize_cprofile, summarize_pyspy  # noqa: E402
from tests.e2e.system import (  # noqa: E402
    SERVICE_TOKEN,
    RunningSystem,
    distributed,
    stop,
    wait_ready,
)
from tests.e2e.system import _base_env as base_env  # noqa: E402
from tests.e2e.system import _port_with_neighbours as port_with_neighbours  # noqa: E402
from tests.e2e.trips import make_flight, make_hotel, trip  # noqa: E402

FINAL = frozenset({"CONFIRMED", "FAILED", "CANCELLED"})
OPEN_HOLD = frozenset({"HELD", "CONFIRMED"})
USER_PASSWORD = "bench traveller passphrase"  # noqa: S105 - a throwaway local account
MAX_SEATS_PER_FLIGHT = 1000  # the flights service's limit
# The backends `wayfare up` puts on the ports after the gateway's.
BACKENDS = 6
RISE = 1.05  # a level "rises" when it books at least 5% more per second than the one before

OVERRIDES = {
    "WAYFARE_LOG_LEVEL": "warning",
    "WAYFARE_RATE_LIMIT_DEFAULT": "100000000/minute",
    "WAYFARE_RATE_LIMIT_AUTH": "100000000/minute",
    "WAYFARE_MAX_PENDING_BOOKINGS": "1000000",
    # Outlives any run of this script, so no token expires mid-measurement.
    "WAYFARE_ACCESS_TOKEN_TTL": "86400",
}


# --- CPU pinning and accounting -----------------------------------------------------------


def pin_self(cpu: int) -> None:
    """Put every thread of this process on `cpu`; processes started after inherit it."""
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(int(task.name), {cpu})


# Processes of this run that are not its descendants (a daemonised PostgreSQL postmaster).
ADOPTED: list[int] = []


def ours() -> list[int]:
    """Every process this run started and still has: descendants, and the adopted with theirs."""
    found = descendants(os.getpid())
    for pid in ADOPTED:
        if Path(f"/proc/{pid}").exists():
            found += [pid, *descendants(pid)]
    return sorted(set(found))


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rpartition(")")[2].split()[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found.extend(children)
        frontier.extend(children)
    return sorted(found)


def process_name(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in cmdline if w]
    for module in ("wayfare", "bench.bookings_profile"):  # the latter profiles `wayfare up`
        if module in words:
            return "wayfare " + " ".join(words[words.index(module) + 1 :][:2])
    # Some servers rewrite their title into one word list ("redis-server 127.0.0.1:6379").
    # ... and PostgreSQL's backends theirs into "postgres: user db address state".
    return Path(words[0].split()[0]).name.rstrip(":") if words else "?"


def cpus_of(pid: int) -> str:
    """The CPUs the process's threads may run on, e.g. '1' (several sets joined by '/')."""
    sets: set[str] = set()
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                sets.add(",".join(str(c) for c in sorted(os.sched_getaffinity(int(task.name)))))
    return "/".join(sorted(sets)) or "?"


def print_pinning(client_cpu: int, system_cpu: int) -> None:
    me = os.getpid()
    print(
        f"  pinning: client (this process, pid {me}) on CPU {cpus_of(me)}; system on CPU ", end=""
    )
    rows = [(pid, process_name(pid), cpus_of(pid)) for pid in ours()]
    print(f"{system_cpu}: {len(rows)} processes")
    misplaced = [row for row in rows if row[2] != str(system_cpu)]
    for pid, name, cpus in rows:
        if name.startswith("wayfare") or name in ("redis-server", "beam.smp"):
            print(f"    pid {pid:<7} cpu {cpus:<4} {name}")
    postgres = [row for row in rows if row[1] == "postgres"]
    if postgres:
        cpus = ",".join(sorted({row[2] for row in postgres}))
        print(
            f"    pid {postgres[0][0]:<7} cpu {cpus:<4} postgres (and {len(postgres) - 1} backends)"
        )
    if misplaced or cpus_of(me) != str(client_cpu):
        print(f"  WARNING: not pinned as intended: {misplaced}")


def core_busy_seconds(cpu: int) -> float:
    """Time the core spent on anything but idling, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name == f"cpu{cpu}":
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, ticks[:8])
            return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def cpu_seconds(pid: int, tid: int | None = None, *, reaped: bool = True) -> float:
    """User + system CPU time so far of a live process (all its threads), or of one thread.

    With `reaped`, that of the children it has waited for too: PostgreSQL's backends come
    and go with the pool's overflow connections, and their time must not go with them.
    """
    stat = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        fields = Path(stat).read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped and tid is None:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def part_of(pid: int) -> str:
    """Which part of the system a process is, for CPU per booking."""
    name = process_name(pid)
    if name.startswith("wayfare serve"):
        return name.split()[2]
    if name.startswith("wayfare up") or name.startswith("wayfare /"):
        return "up"
    return {"postgres": "postgres", "redis-server": "redis", "beam.smp": "rabbitmq"}.get(
        name, "other"
    )


@dataclass(frozen=True)
class Busy:
    """Shares of one core's time over a span: all its work, and the part not ours."""

    total: float
    others: float


@dataclass(frozen=True)
class Snapshot:
    at: float
    core_client: float
    core_system: float
    ours_client: float
    parts: dict[str, float]  # CPU seconds of the system's parts, by `part_of`


@dataclass(frozen=True)
class Span:
    wall: float
    client: Busy
    system: Busy
    parts: dict[str, float]  # CPU seconds each part of the system spent in the span


@dataclass
class CoreMeter:
    """How busy the client's and the system's cores were, how much of it was not us, and
    what each part of the system spent.

    The machine may be shared: work of processes this run did not start shows as
    `others`, and figures taken while it is high are disturbed (CPU per booking much less).
    In `wayfare up`, the main thread (the event loop: every service's Python code) and
    the other threads (aiosqlite's, running SQLite) are told apart.
    """

    client_cpu: int
    system_cpu: int
    _start: Snapshot | None = None

    def snapshot(self) -> Snapshot:
        me = os.getpid()
        client = cpu_seconds(me, reaped=False)
        parts: dict[str, float] = {}
        for pid in ours():
            if cpus_of(pid) != str(self.system_cpu):
                client += cpu_seconds(pid)
                continue
            part = part_of(pid)
            if part == "up":
                main = cpu_seconds(pid, pid)
                parts["up: main thread"] = parts.get("up: main thread", 0.0) + main
                rest = cpu_seconds(pid, reaped=False) - main
                parts["up: other threads"] = parts.get("up: other threads", 0.0) + rest
            else:
                parts[part] = parts.get(part, 0.0) + cpu_seconds(pid)
        return Snapshot(
            time.monotonic(),
            core_busy_seconds(self.client_cpu),
            core_busy_seconds(self.system_cpu),
            client,
            parts,
        )

    def system_seconds(self) -> float:
        return sum(self.snapshot().parts.values())

    def start(self) -> None:
        self._start = self.snapshot()

    def span(self) -> Span:
        """Since `start`."""
        assert self._start is not None
        then, now = self._start, self.snapshot()
        wall = max(1e-9, now.at - then.at)
        parts = {k: v - then.parts.get(k, 0.0) for k, v in now.parts.items()}
        core_client = (now.core_client - then.core_client) / wall
        core_system = (now.core_system - then.core_system) / wall
        ours_client = (now.ours_client - then.ours_client) / wall
        ours_system = sum(parts.values()) / wall
        return Span(
            wall,
            Busy(core_client, max(0.0, core_client - ours_client)),
            Busy(core_system, max(0.0, core_system - ours_system)),
            parts,
        )


async def settle(meter: CoreMeter, *, below: float = 0.25, within: float = 5.0) -> None:
    """Wait (bounded) until the system is quiet: its outbox and consumers caught up."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        before = meter.system_seconds()
        await asyncio.sleep(0.3)
        if (meter.system_seconds() - before) / 0.3 < below:
            return


# --- the systems ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profiling:
    kind: str  # "cprofile" or "py-spy"
    at: int  # the concurrency level py-spy records
    output: Path


@dataclass
class Target:
    system: RunningSystem
    services: dict[str, str]
    up_pid: int | None = None  # the `wayfare up` process, for py-spy


@contextlib.contextmanager
def embedded_system(data_dir: Path, profiling: Profiling | None) -> Iterator[Target]:
    """`wayfare up`, as tests.e2e.system.embedded starts it, optionally under cProfile."""
    port = port_with_neighbours(BACKENDS)
    env = base_env(data_dir, OVERRIDES)
    data_dir.mkdir(parents=True, exist_ok=True)
    prefix: list[str] = []
    if profiling is not None and profiling.kind == "cprofile":
        prefix = ["-m", "bench.bookings_profile", str(profiling.output)]
    command = [sys.executable, *(prefix or ["-m", "wayfare"]), "up"]
    command += ["--port", str(port), "--data-dir", str(data_dir)]
    system = RunningSystem(url=f"http://127.0.0.1:{port}", data_dir=data_dir, env=env)
    with open(data_dir / "up.log", "ab") as log:
        system.processes["up"] = subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(system, system.url)
        services = json.loads((data_dir / "services.json").read_text())
        system.services = services
        yield Target(system, services, up_pid=system.processes["up"].pid)
    finally:
        for proc in system.processes.values():
            stop(proc)  # SIGINT: `up` shuts down cleanly, and cProfile writes its file


@contextlib.contextmanager
def distributed_system(data_dir: Path) -> Iterator[Target]:
    """PostgreSQL, Redis, RabbitMQ and `wayfare serve` per service, one gateway."""
    from wayfare.kit.testing.servers import postgres_server, rabbitmq_server, redis_server

    with (
        postgres_server() as postgres,
        redis_server() as redis,
        rabbitmq_server() as rabbitmq,
    ):
        database_url = postgres.create_database("wayfare_bench")
        # pg_ctl daemonises the postmaster: count it (and its backends) as ours all the same.
        ADOPTED.append(int((postgres.data_dir / "postmaster.pid").read_text().split()[0]))
        try:
            with distributed(
                data_dir,
                database_url=database_url,
                redis_url=redis.url,
                broker_url=rabbitmq.url,
                # The keys are WAYFARE_* names, never `gateways`.
                **OVERRIDES,  # type: ignore[arg-type]
            ) as systems:
                system = systems[0]
                yield Target(system, dict(system.services))
        finally:
            ADOPTED.clear()


# --- the client ------------------------------------------------------------------------


@dataclass
class Trip:
    index: int
    key: str
    token: str
    body: bytes
    booking_id: str | None = None
    status: str | None = None  # the last status seen
    first_code: int | None = None
    latency: float | None = None  # seconds from POST to final, when seen within the level
    polls: int = 0
    retries: list[str] = field(default_factory=list)  # why each POST was sent again
    error: str | None = None


@dataclass
class Level:
    concurrency: int
    trips: list[Trip]
    wall: float
    baseline_rps: float
    baseline_p50: float
    baseline_p99: float
    baseline_errors: int
    baseline_count: int
    span: Span  # the bookings
    baseline_span: Span

    @property
    def finished(self) -> list[Trip]:
        return [t for t in self.trips if t.latency is not None]

    @property
    def rate(self) -> float:
        return len(self.finished) / self.wall if self.wall > 0 else 0.0

    def percentile(self, q: float) -> float:
        return quantile([t.latency for t in self.finished if t.latency is not None], q)

    def count(self, status: str) -> int:
        return sum(1 for t in self.finished if t.status == status)

    @property
    def cpu_per_booking(self) -> float:
        """CPU seconds the system's processes spent per finished booking."""
        return sum(self.span.parts.values()) / max(1, len(self.finished))

    @property
    def cpu_per_get(self) -> float:
        return sum(self.baseline_span.parts.values()) / max(1, self.baseline_count)


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by the nearest rank; NaN when there is nothing to rank."""
    if not values:
        return float("nan")
    ranked = sorted(values)
    return ranked[min(len(ranked) - 1, max(0, round(q * len(ranked) + 0.5) - 1))]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def read_json(response: aiohttp.ClientResponse) -> Any:
    raw = await response.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"raw": raw[:200].decode(errors="replace")}


class Transient(Exception):
    """An answer a client retries with the same Idempotency-Key (429 or 5xx)."""


TRANSIENT = frozenset({429, 500, 502, 503, 504})
RETRY_AFTER = 0.5  # seconds before a POST is sent again


async def post_booking(http: aiohttp.ClientSession, url: str, trip_: Trip) -> None:
    headers = {
        **bearer(trip_.token),
        "Idempotency-Key": trip_.key,
        "Content-Type": "application/json",
    }
    async with http.post(f"{url}/api/v1/bookings", data=trip_.body, headers=headers) as answer:
        trip_.first_code = trip_.first_code or answer.status
        payload = await read_json(answer)
    if answer.status in TRANSIENT:
        raise Transient(f"POST answered {answer.status}: {str(payload)[:200]}")
    if answer.status not in (200, 201, 202):
        raise RuntimeError(f"POST answered {answer.status}: {str(payload)[:200]}")
    trip_.booking_id = str(payload["id"])
    trip_.status = str(payload["status"])


async def poll_once(http: aiohttp.ClientSession, url: str, trip_: Trip) -> None:
    trip_.polls += 1
    async with http.get(
        f"{url}/api/v1/bookings/{trip_.booking_id}", headers=bearer(trip_.token)
    ) as answer:
        payload = await read_json(answer)
    if answer.status != 200:
        raise RuntimeError(f"GET answered {answer.status}: {str(payload)[:200]}")
    trip_.status = str(payload["status"])


async def book_trip(
    http: aiohttp.ClientSession, url: str, trip_: Trip, *, poll: float, give_up: float
) -> None:
    """Book and poll until final or `give_up` (a monotonic time); sets the trip's latency.

    A POST that fails on the way (no answer, 429, 5xx such as the gateway's 504) is sent
    again with the same Idempotency-Key, as a client would: the clock keeps running.
    """
    sent = time.perf_counter()
    try:
        while True:
            try:
                await post_booking(http, url, trip_)
                break
            except (aiohttp.ClientError, TimeoutError, Transient) as exc:
                trip_.retries.append(f"{type(exc).__name__}: {exc}"[:300])
                if time.monotonic() + RETRY_AFTER > give_up:
                    raise
                await asyncio.sleep(RETRY_AFTER)
        while trip_.status not in FINAL:
            if time.monotonic() > give_up:
                return
            await asyncio.sleep(poll)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, RuntimeError):
                await poll_once(http, url, trip_)
    except (aiohttp.ClientError, TimeoutError, Transient, RuntimeError, KeyError) as exc:
        trip_.error = f"{type(exc).__name__}: {exc}"[:300]
        return
    trip_.latency = time.perf_counter() - sent


async def run_trips(
    http: aiohttp.ClientSession,
    url: str,
    trips: list[Trip],
    concurrency: int,
    *,
    cap: float,
    grace: float,
    poll: float,
) -> float:
    """Closed loop: `concurrency` workers take trips until none is left or `cap` s passed."""
    queue = iter(trips)
    started = time.monotonic()
    stop_starting = started + cap
    give_up = stop_starting + grace
    last_final = started

    async def worker() -> None:
        nonlocal last_final
        for trip_ in queue:
            if time.monotonic() > stop_starting:
                return
            await book_trip(http, url, trip_, poll=poll, give_up=give_up)
            if trip_.latency is not None:
                last_final = max(last_final, time.monotonic())

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return last_final - started


async def run_baseline(
    http: aiohttp.ClientSession, url: str, tokens: Sequence[str], concurrency: int, seconds: float
) -> tuple[float, float, float, int, int]:
    """(req/s, p50 s, p99 s, errors, answered) of `GET /users/me` for `seconds`, closed loop."""
    latencies: list[float] = []
    errors = 0
    started = time.monotonic()
    end = started + seconds

    async def worker(index: int) -> None:
        nonlocal errors
        headers = bearer(tokens[index % len(tokens)])
        while time.monotonic() < end:
            sent = time.perf_counter()
            try:
                async with http.get(f"{url}/api/v1/users/me", headers=headers) as answer:
                    await answer.read()
                    ok = answer.status == 200
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                latencies.append(time.perf_counter() - sent)
            else:
                errors += 1

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    wall = time.monotonic() - started
    return (
        len(latencies) / wall,
        quantile(latencies, 0.5),
        quantile(latencies, 0.99),
        errors,
        len(latencies),
    )


async def travellers(http: aiohttp.ClientSession, url: str, count: int) -> list[str]:
    """Register and log in `count` travellers at once; their access tokens."""

    async def one(index: int) -> str:
        email = f"bench-{index}-{secrets.token_hex(4)}@example.com"
        body = {"email": email, "password": USER_PASSWORD, "name": f"Bench {index}"}
        async with http.post(f"{url}/api/v1/auth/register", json=body) as made:
            if made.status != 201:
                raise RuntimeError(f"register answered {made.status}: {await made.text()}")
        login = {"email": email, "password": USER_PASSWORD}
        async with http.post(f"{url}/api/v1/auth/login", json=login) as tokens:
            if tokens.status != 200:
                raise RuntimeError(f"login answered {tokens.status}: {await tokens.text()}")
            return str((await tokens.json())["access_token"])

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def inventory_for(target: Target, trips: int) -> list[bytes]:
    """A fresh hotel with a room per trip and flights with a seat per trip; a body per trip."""
    hotel = make_hotel(target.system, rooms=max(1, trips))
    flights = [
        make_flight(target.system, seats=min(MAX_SEATS_PER_FLIGHT, trips - start))
        for start in range(0, max(1, trips), MAX_SEATS_PER_FLIGHT)
    ]
    return [orjson.dumps(trip(hotel, flights[i % len(flights)])) for i in range(trips)]


# --- the invariants ----------------------------------------------------------------------


@dataclass
class Invariants:
    trips: int
    lost: list[str]
    half_done: list[str]
    inventory: dict[str, bool]
    late: int  # final only after the level's time was up

    @property
    def ok(self) -> bool:
        return not self.lost and not self.half_done and all(self.inventory.values())


async def check_invariants(
    http: aiohttp.ClientSession, target: Target, trips: list[Trip], *, grace: float, poll: float
) -> Invariants:
    url = target.system.url
    deadline = time.monotonic() + grace
    unresolved = [t for t in trips if t.status not in FINAL]
    late = 0

    async def resolve(trip_: Trip) -> None:
        nonlocal late
        while time.monotonic() < deadline:
            with contextlib.suppress(
                aiohttp.ClientError, TimeoutError, Transient, RuntimeError, KeyError
            ):
                if trip_.booking_id is None:
                    # The same key again: the booking it made, if any (or one made now).
                    await post_booking(http, url, trip_)
                else:
                    await poll_once(http, url, trip_)
            if trip_.status in FINAL:
                late += 1
                return
            await asyncio.sleep(max(poll, 0.2))

    await asyncio.gather(*(resolve(t) for t in unresolved))
    lost = [
        f"#{t.index} {t.booking_id} {t.status} {t.error}" for t in trips if t.status not in FINAL
    ]

    internal = {"X-Service-Token": SERVICE_TOKEN}
    gate = asyncio.Semaphore(16)

    async def hold(service: str, booking_id: str) -> str | None:
        async with (
            gate,
            http.get(
                f"{target.services[service]}/internal/holds/{booking_id}", headers=internal
            ) as answer,
        ):
            if answer.status == 404:
                return None
            payload = await read_json(answer)
            if answer.status != 200:
                raise RuntimeError(f"{service} hold answered {answer.status}: {payload}")
            return str(payload["status"])

    async def half_done(trip_: Trip) -> str | None:
        assert trip_.booking_id is not None
        hotel, flight = await asyncio.gather(
            hold("hotels", trip_.booking_id), hold("flights", trip_.booking_id)
        )
        if trip_.status == "CONFIRMED" and not hotel == flight == "CONFIRMED":
            return f"{trip_.booking_id} CONFIRMED with holds hotel={hotel} flight={flight}"
        if trip_.status == "FAILED" and (hotel in OPEN_HOLD or flight in OPEN_HOLD):
            return f"{trip_.booking_id} FAILED with holds hotel={hotel} flight={flight}"
        return None

    final = [t for t in trips if t.status in FINAL and t.booking_id is not None]
    found = await asyncio.gather(*(half_done(t) for t in final))

    inventory: dict[str, bool] = {}
    for service in ("hotels", "flights"):
        async with http.get(
            f"{target.services[service]}/internal/inventory/check", headers=internal
        ) as answer:
            report = await read_json(answer)
        inventory[service] = answer.status == 200 and bool(report.get("ok"))
        if not inventory[service]:
            print(f"  {service} inventory: {str(report)[:600]}")
    return Invariants(
        trips=len(trips),
        lost=lost,
        half_done=[f for f in found if f is not None],
        inventory=inventory,
        late=late,
    )


def logged_errors(data_dir: Path, limit: int = 5) -> list[str]:
    """The most frequent errors and warnings the system logged, with their counts."""
    seen: Counter[str] = Counter()
    for log in sorted(data_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if not isinstance(entry, dict) or entry.get("level") not in ("error", "warning"):
                continue
            last = str(entry.get("exception", "")).strip().splitlines()[-1:]
            fields = (entry.get("level"), entry.get("event"), *last)
            seen[f"{log.stem}: " + " | ".join(str(f)[:160] for f in fields)] += 1
    return [f"{count:>5} x {what}" for what, count in seen.most_common(limit)]


# --- a mode ------------------------------------------------------------------------------


@dataclass
class ModeResult:
    mode: str
    levels: list[Level] = field(default_factory=list)
    invariants: Invariants | None = None
    profile: str | None = None
    profiled_bookings: int = 0


def start_pyspy(pid: int, output: Path, cpu: int) -> subprocess.Popen[bytes]:
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        raise SystemExit("--profile py-spy needs py-spy: uv run --with py-spy python ...")
    with open(output.with_suffix(".log"), "wb") as log:
        return subprocess.Popen(
            [
                "taskset",
                "-c",
                str(cpu),
                pyspy,
                "record",
                "--pid",
                str(pid),
                "--rate",
                "200",
                "--format",
                "raw",
                "--threads",
                "--nonblocking",
                "--output",
                str(output),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_pyspy(process: subprocess.Popen[bytes]) -> None:
    # SIGINT makes py-spy write what it sampled; it runs in its own group.
    stop(process, signal.SIGINT)


async def run_mode(
    mode: str, target: Target, args: argparse.Namespace, profiling: Profiling | None
) -> ModeResult:
    result = ModeResult(mode)
    url = target.system.url
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        tokens = await travellers(http, url, args.users)
        # Warm up: token caches, JWKS, connection pools, SQLite pages, the first saga.
        warm = [
            Trip(-1 - i, secrets.token_hex(8), tokens[i % len(tokens)], body)
            for i, body in enumerate(inventory_for(target, 2 * len(tokens)))
        ]
        await run_trips(http, url, warm, len(tokens), cap=30, grace=30, poll=args.poll_interval)
        await run_baseline(http, url, tokens, 4, 0.5)
        all_trips: list[Trip] = []
        meter = CoreMeter(args.client_cpu, args.system_cpu)
        print(HEADER)
        for concurrency in args.concurrency:
            bodies = inventory_for(target, args.trips)
            trips = [
                Trip(i, secrets.token_hex(8), tokens[i % len(tokens)], body)
                for i, body in enumerate(bodies)
            ]
            all_trips += trips
            await settle(meter)
            meter.start()
            rps, b50, b99, berr, bcount = await run_baseline(
                http, url, tokens, concurrency, args.baseline_seconds
            )
            baseline_span = meter.span()
            await settle(meter)
            spy = None
            profiled = profiling is not None and profiling.at == concurrency
            if profiled and profiling and target.up_pid is not None:
                if profiling.kind == "py-spy":
                    spy = start_pyspy(target.up_pid, profiling.output, args.client_cpu)
                    await asyncio.sleep(1.0)  # py-spy attaches
                else:
                    os.kill(target.up_pid, signal.SIGUSR1)  # cProfile on
            meter.start()
            try:
                wall = await run_trips(
                    http,
                    url,
                    trips,
                    concurrency,
                    cap=args.duration_cap,
                    grace=args.grace,
                    poll=args.poll_interval,
                )
            finally:
                if spy is not None:
                    stop_pyspy(spy)
                if profiled and profiling and profiling.kind == "cprofile" and target.up_pid:
                    os.kill(target.up_pid, signal.SIGUSR2)  # cProfile off
            level = Level(
                concurrency,
                trips,
                wall,
                rps,
                b50,
                b99,
                berr,
                bcount,
                meter.span(),
                baseline_span,
            )
            result.levels.append(level)
            if profiled:
                result.profiled_bookings = len(level.finished)
            print_level(level)
        result.invariants = await check_invariants(
            http, target, all_trips, grace=args.grace, poll=args.poll_interval
        )
    return result


HEADER = (
    f"  {'C':>4} {'bookings/s':>10} {'p50 ms':>7} {'p99 ms':>7} {'confirmed':>9} {'failed':>6} "
    f"{'202s':>4} {'again':>5} | {'GET /me/s':>9} {'p50 ms':>6} {'ratio':>5} | {'CPU ms/bk':>9} "
    f"{'ratio':>5} | {'sys core':>8} {'(others)':>8} {'cli core':>8} {'(others)':>8}"
)


def row(level: Level) -> str:
    accepted = sum(1 for t in level.trips if t.first_code == 202)
    again = sum(1 for t in level.trips if t.retries)
    ratio = level.baseline_rps / level.rate if level.rate else float("inf")
    client, system = level.span.client, level.span.system
    return (
        f"  {level.concurrency:>4} {level.rate:>10.1f} {level.percentile(0.5) * 1e3:>7.0f} "
        f"{level.percentile(0.99) * 1e3:>7.0f} {level.count('CONFIRMED'):>9} "
        f"{level.count('FAILED'):>6} {accepted:>4} {again:>5} | {level.baseline_rps:>9.0f} "
        f"{level.baseline_p50 * 1e3:>6.1f} {ratio:>4.0f}x | {level.cpu_per_booking * 1e3:>9.1f} "
        f"{level.cpu_per_booking / max(1e-9, level.cpu_per_get):>4.0f}x | {system.total:>8.0%} "
        f"{system.others:>8.0%} {client.total:>8.0%} {client.others:>8.0%}"
    )


def cpu_line(level: Level) -> str:
    """CPU ms per finished booking, by part of the system (the GET /me baseline excluded)."""
    done = max(1, len(level.finished))
    parts = sorted(level.span.parts.items(), key=lambda kv: -kv[1])
    total = sum(level.span.parts.values())
    return f"        CPU ms/booking {total / done * 1e3:.1f} = " + " + ".join(
        f"{name} {seconds / done * 1e3:.1f}" for name, seconds in parts if seconds > 0
    )


def print_level(level: Level) -> None:
    print(row(level), flush=True)
    print(cpu_line(level), flush=True)
    unfinished = len(level.trips) - len(level.finished)
    if unfinished:
        print(f"        {unfinished} trips not final within the level's time")
    retried = [t.retries[0] for t in level.trips if t.retries]
    if retried:
        print(f"        {len(retried)} trips sent their POST again, e.g. after {retried[0]}")
    errors = [t.error for t in level.trips if t.error]
    if errors:
        print(f"        {len(errors)} trips failed on the client side, e.g. {errors[0]}")
    if level.baseline_errors:
        print(f"        {level.baseline_errors} baseline requests failed")


def saturation(levels: Sequence[Level]) -> str:
    """The concurrency after which bookings/s stops rising (by `RISE` or more)."""
    if len(levels) < 2:
        return "unknown (one level only)"
    for i, level in enumerate(levels[:-1]):
        best_after = max(later.rate for later in levels[i + 1 :])
        if best_after < level.rate * RISE:
            return (
                f"C={level.concurrency} ({level.rate:.1f} bookings/s; "
                f"the best at higher C is {best_after:.1f}/s)"
            )
    return f"not reached: still rising at C={levels[-1].concurrency}"


def report(result: ModeResult) -> None:
    print(f"\n== {result.mode}: {len(result.levels[0].trips) if result.levels else 0} trips/level")
    print(HEADER)
    for level in result.levels:
        print(row(level))
    for level in result.levels:
        print(f"    C={level.concurrency}: " + cpu_line(level).strip())
    print(f"  saturation: {saturation(result.levels)}")
    inv = result.invariants
    if inv is not None:
        print(
            f"  invariants over {inv.trips} trips: lost {len(inv.lost)}, "
            f"half-done {len(inv.half_done)}, inventory conserved: "
            + ", ".join(f"{k} {'ok' if v else 'VIOLATED'}" for k, v in inv.inventory.items())
            + (f" ({inv.late} reached a final state only after their level)" if inv.late else "")
        )
        for line in (inv.lost + inv.half_done)[:10]:
            print(f"    {line}")
    if result.profile:
        print(result.profile)


# --- main --------------------------------------------------------------------------------


def levels_arg(text: str) -> list[int]:
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels are positive integers")
    return levels


def modes_arg(text: str) -> list[str]:
    modes = [part.strip() for part in text.split(",") if part.strip()]
    if not modes or set(modes) - {"embedded", "distributed"}:
        raise argparse.ArgumentTypeError("modes: embedded, distributed")
    return modes


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trips", type=int, default=300, help="trips per concurrency level")
    parser.add_argument("--concurrency", type=levels_arg, default=[1, 8, 32, 64])
    parser.add_argument("--mode", type=modes_arg, default=["embedded", "distributed"])
    parser.add_argument(
        "--duration-cap", type=float, default=120.0, help="s per level after which no trip starts"
    )
    parser.add_argument(
        "--grace", type=float, default=60.0, help="s a started trip may take past the cap"
    )
    parser.add_argument("--poll-interval", type=float, default=0.05, help="s between polls")
    parser.add_argument("--users", type=int, default=4, help="travellers booking the trips")
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    parser.add_argument("--client-cpu", type=int, default=0)
    parser.add_argument("--system-cpu", type=int, default=1)
    parser.add_argument(
        "--keep-logs", type=Path, default=None, help="copy the system's logs here per mode"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="WAYFARE_NAME=VALUE",
        help="a setting for the system, e.g. WAYFARE_DB_POOL_PRE_PING=false (repeatable)",
    )
    parser.add_argument("--profile", choices=["cprofile", "py-spy"], default=None)
    parser.add_argument(
        "--profile-at", type=int, default=None, help="py-spy: the level to record (default: last)"
    )
    parser.add_argument(
        "--profile-out", type=Path, default=None, help="where the profile is kept (default: temp)"
    )
    args = parser.parse_args(argv)
    if args.trips < 1 or args.users < 1:
        parser.error("--trips and --users must be at least 1")
    for setting in args.set:
        name, sep, value = setting.partition("=")
        if not sep or not name.startswith("WAYFARE_"):
            parser.error(f"--set takes WAYFARE_NAME=VALUE, not {setting!r}")
        OVERRIDES[name] = value
    if args.client_cpu == args.system_cpu:
        parser.error("the client and the system need different CPUs")
    available = os.sched_getaffinity(0)
    if not {args.client_cpu, args.system_cpu} <= available:
        parser.error(f"CPUs {args.client_cpu} and {args.system_cpu} are not both in {available}")
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    # SystemExit unwinds through every `finally`, so the processes and dirs go too.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    results: list[ModeResult] = []
    with tempfile.TemporaryDirectory(prefix="wayfare-bench-bookings-") as tmp:
        profiling = None
        if args.profile:
            suffix = ".prof" if args.profile == "cprofile" else ".txt"
            output = args.profile_out or Path(tmp) / f"up{suffix}"
            profiling = Profiling(args.profile, args.profile_at or args.concurrency[-1], output)
        print(
            f"bookings bench: {args.trips} trips per level, concurrency {args.concurrency}, "
            f"{args.users} travellers, poll every {args.poll_interval * 1e3:.0f} ms, "
            f"cap {args.duration_cap:.0f} s per level"
            + (f", settings {' '.join(args.set)}" if args.set else "")
        )
        for mode in args.mode:
            print(f"\n== {mode}")
            data_dir = Path(tmp) / mode
            # The system inherits the system CPU; the client moves to its own after.
            pin_self(args.system_cpu)
            started = time.monotonic()
            cm = (
                embedded_system(data_dir, profiling if mode == "embedded" else None)
                if mode == "embedded"
                else distributed_system(data_dir)
            )
            with cm as target:
                pin_self(args.client_cpu)
                print(f"  started in {time.monotonic() - started:.1f} s")
                print_pinning(args.client_cpu, args.system_cpu)
                result = asyncio.run(
                    run_mode(mode, target, args, profiling if mode == "embedded" else None)
                )
                errors = logged_errors(data_dir)
                if errors:
                    print(f"  what the {mode} system logged at warning level or above:")
                    print("\n".join(f"    {line}" for line in errors))
                if args.keep_logs is not None:
                    kept = args.keep_logs / mode
                    kept.mkdir(parents=True, exist_ok=True)
                    for log in data_dir.glob("*.log"):
                        shutil.copy(log, kept / log.name)
            pin_self(args.system_cpu)
            if profiling is not None and mode == "embedded":
                if profiling.kind == "cprofile":
                    result.profile = summarize_cprofile(
                        profiling.output, bookings=result.profiled_bookings
                    )
                else:
                    result.profile = summarize_pyspy(profiling.output)
            results.append(result)
        for result in results:
            report(result)
    ok = all(r.invariants is not None and r.invariants.ok for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
