"""What the overview cache buys: `GET /api/v1/me/overview` through the gateway, cold and warm.

    uv run python bench/overview.py [--duration 10] [--connections 32] [--users 20]
        [--bookings-per-user 1] [--warmup 2] [--profile [--profile-native]] [--check] [--keep]

One run, two systems, one after the other, each `wayfare serve` per service on real
PostgreSQL, Redis and RabbitMQ behind one gateway (`tests/e2e/system.py` `distributed`):

1. cold - `WAYFARE_CACHE_ENABLED=false`: every overview is composed from users, bookings
   and notifications (and none of them caches either);
2. warm - the cache on (Redis); every traveller's overview is loaded once before the run,
   so the run reads the cache.

Both systems get the same travellers (`--users`, each with `--bookings-per-user` confirmed
trips and their notifications), and wrk rotates the travellers' bearer tokens over its
requests (a small Lua script reading them from a file), counting each answer's `x-cache`
header and any degraded (incomplete) answer. The warm figures also show the gateway's own
`wayfare_cache_hits_total` / `wayfare_cache_misses_total` for the overview namespace, and
its `wayfare_cache_errors_total`: a Redis call slower than the back end's socket timeout
makes the cache bypass itself for a while, and the misses follow.

Every server (PostgreSQL, Redis, RabbitMQ, the services, the gateway, and this script)
runs on one core and wrk on the other, so the load generator does not take CPU from what
it measures; the affinity of each process is printed. Besides req/s and latency, the CPU
each process group spent per answered request is shown: with the servers' core saturated,
req/s is about 1 / (their sum).

`--profile` records the gateway with py-spy during one more warm run (not the measured one)
and prints where its time goes; it needs py-spy (`uv run --with py-spy python ...`).
py-spy counts the time the gateway is runnable but waiting for the shared core too (after
waking Redis with a send, say), so read it beside the CPU columns. `--profile-native` adds
C frames, but then py-spy pauses the gateway for each sample, which skews the samples
towards system calls.

Every process started here is stopped, and every temporary directory removed, on exit,
failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/overview.py` puts bench/, not the repo, first
    sys.path.insert(0, str(REPO))

from tests.e2e.system import RunningSystem, distributed  # noqa: E402
from tests.e2e.test_journey import bearer, register_and_login  # noqa: E402
from tests.e2e.trips import FINAL, book, make_flight, make_hotel, trip  # noqa: E402
from wayfare.kit.testing.servers import (  # noqa: E402
    PostgresServer,
    RabbitMQServer,
    RedisServer,
    postgres_server,
    rabbitmq_server,
    redis_server,
)

OVERVIEW = "/api/v1/me/overview"
RATIO_TARGET = 5.0  # warm req/s over cold req/s
SETTLE_QUIET_S = 2.0  # the overviews must not change for this long before a run
SETTLE_TIMEOUT_S = 90.0

# Rotates the travellers' tokens over the requests and counts what came back. `hits` and
# the other counters are globals so that `done` can read them from each thread's state.
WRK_SCRIPT = r"""
local path = "/api/v1/me/overview"
local prepared = {}
local turn = 0
local threads = {}
hits, misses, unmarked, failed, degraded = 0, 0, 0, 0, 0

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local file = assert(io.open(args[1], "r"))
  for token in file:lines() do
    if #token > 0 then
      prepared[#prepared + 1] = wrk.format("GET", path, {["Authorization"] = "Bearer " .. token})
    end
  end
  file:close()
  assert(#prepared > 0, "no tokens in " .. args[1])
end

function request()
  turn = turn % #prepared + 1
  return prepared[turn]
end

function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
  elseif not string.find(body, '"degraded":[]', 1, true) then
    degraded = degraded + 1
  end
  local cache = headers["x-cache"]
  if cache == "hit" then
    hits = hits + 1
  elseif cache == "miss" then
    misses = misses + 1
  else
    unmarked = unmarked + 1
  end
end

function done(summary, latency, _)
  local sums = {hits = 0, misses = 0, unmarked = 0, failed = 0, degraded = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(sums) do
      sums[name] = sums[name] + thread:get(name)
    end
  end
  local e = summary.errors
  io.write(string.format(
    'OVERVIEW_BENCH {"requests":%.0f,"duration_us":%.0f,"p50_us":%.0f,"p90_us":%.0f,' ..
    '"p99_us":%.0f,"max_us":%.0f,"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,' ..
    '"timeout":%.0f,"hits":%.0f,"misses":%.0f,"unmarked":%.0f,"failed":%.0f,' ..
    '"degraded":%.0f}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    sums.hits, sums.misses, sums.unmarked, sums.failed, sums.degraded))
end
"""


# --- wrk ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    socket_errors: int
    non_200: int
    degraded: int
    hits: int
    misses: int
    unmarked: int

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.duration_s

    @property
    def hit_ratio(self) -> float:
        answered = self.hits + self.misses + self.unmarked
        return self.hits / answered if answered else 0.0


def parse_wrk(output: str) -> WrkResult:
    match = re.search(r"^OVERVIEW_BENCH (\{.*\})$", output, re.MULTILINE)
    if match is None:
        raise ValueError(f"wrk printed no figures:\n{output}")
    f: dict[str, float] = json.loads(match.group(1))
    return WrkResult(
        requests=int(f["requests"]),
        duration_s=f["duration_us"] / 1e6,
        p50_ms=f["p50_us"] / 1e3,
        p90_ms=f["p90_us"] / 1e3,
        p99_ms=f["p99_us"] / 1e3,
        max_ms=f["max_us"] / 1e3,
        socket_errors=int(f["connect"] + f["read"] + f["write"] + f["timeout"]),
        non_200=int(f["failed"]),
        degraded=int(f["degraded"]),
        hits=int(f["hits"]),
        misses=int(f["misses"]),
        unmarked=int(f["unmarked"]),
    )


def run_wrk(
    url: str, script: Path, tokens: Path, *, cpu: int, connections: int, duration: float
) -> WrkResult:
    # One thread: wrk has one core, and more threads would only fight over it.
    command = [
        "taskset",
        "-c",
        str(cpu),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        # Slow answers are counted in the latency figures rather than dropped as errors.
        "--timeout",
        "10s",
        "-s",
        str(script),
        url + OVERVIEW,
        "--",
        str(tokens),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --- processes, CPU and pinning ------------------------------------------------------------


@dataclass(frozen=True)
class Watched:
    """A server process whose CPU time is counted, with its descendants when `tree`."""

    name: str
    group: str  # the column it is counted in
    pid: int
    tree: bool = False


GROUPS = ("gateway", "services", "redis", "postgres", "rabbitmq")


def _parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                parents[int(entry.name)] = int(stat[1])
    return parents


def _descendants(pid: int, parents: dict[int, int]) -> list[int]:
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def cpu_seconds(pid: int, *, reaped: bool = False) -> float:
    """User + system CPU time of a process so far (all its threads); 0 once it is gone.

    With `reaped`, that of its children that have exited and been waited for too: it
    keeps the sum over a process tree from dropping when one of them (a PostgreSQL
    backend, say) exits during a run.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def cpu_by_group(watched: Sequence[Watched]) -> dict[str, float]:
    parents = _parents()
    spent = dict.fromkeys(GROUPS, 0.0)
    for process in watched:
        if process.tree:
            pids = _descendants(process.pid, parents)
            spent[process.group] += sum(cpu_seconds(pid, reaped=True) for pid in pids)
        else:
            spent[process.group] += cpu_seconds(process.pid)
    return spent


def core_busy_seconds(cpu: int) -> float:
    """Time a core spent on anything but idling, from /proc/stat (steal counts as busy)."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name == f"cpu{cpu}":
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, ticks[:8])
            return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def affinity(pid: int, *, tree: bool = False) -> str:
    """The cores any thread of the process (and of its descendants, when `tree`) may use."""
    pids = _descendants(pid, _parents()) if tree else [pid]
    cpus: set[int] = set()
    for each in pids:
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{each}/task").iterdir():
                with contextlib.suppress(OSError):
                    cpus |= os.sched_getaffinity(int(task.name))
    return ",".join(str(c) for c in sorted(cpus)) or "?"


def postmaster_pid(server: PostgresServer) -> int:
    return int((server.data_dir / "postmaster.pid").read_text().split()[0])


def beam_pid(server: RabbitMQServer) -> int:
    """The Erlang VM of this run's RabbitMQ node, told from others' by its node name."""
    wanted = f"RABBITMQ_NODENAME={server.node}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0]
            if argv0.endswith(b"beam.smp") and wanted in (entry / "environ").read_bytes():
                return int(entry.name)
    raise RuntimeError(f"no beam.smp process for node {server.node}")


def infrastructure(
    postgres: PostgresServer, redis: RedisServer, rabbitmq: RabbitMQServer
) -> list[Watched]:
    return [
        Watched("redis", "redis", redis.process.pid),
        Watched("postgres", "postgres", postmaster_pid(postgres), tree=True),
        Watched("rabbitmq", "rabbitmq", beam_pid(rabbitmq), tree=True),
    ]


def system_processes(system: RunningSystem) -> list[Watched]:
    return [
        Watched(name, "gateway" if name.startswith("gateway") else "services", proc.pid, True)
        for name, proc in system.processes.items()
    ]


def print_pinning(watched: Sequence[Watched], args: argparse.Namespace) -> None:
    print("pinning (sched_getaffinity of every thread; postgres and rabbitmq with children):")
    print(f"  {'bench (this)':<14} pid {os.getpid():<7} cpu {affinity(os.getpid())}")
    for process in watched:
        cpus = affinity(process.pid, tree=process.tree)
        print(f"  {process.name:<14} pid {process.pid:<7} cpu {cpus}")
    print(f"  {'wrk':<14} -t1 -c{args.connections:<4}  cpu {args.client_cpu} (taskset)")


# --- the systems -------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    name: str
    cache: bool


PHASES = (Phase("cold", cache=False), Phase("warm", cache=True))


@dataclass(frozen=True)
class Measurement:
    wrk: WrkResult
    cpu_us: dict[str, float]  # CPU microseconds per answered request, by group
    core_busy: float  # share of the servers' core that was busy
    others: float  # share of the servers' core taken by processes not watched here
    client_core_busy: float
    wrk_cpu: float  # share of its core that wrk itself used
    counters: CacheCounters | None  # the gateway's cache counters, over the run
    gateway_user_us: float  # the gateway's CPU per request, in user space and in the kernel
    gateway_sys_us: float


def overview(client: httpx.Client, token: str) -> httpx.Response:
    answer = client.get(OVERVIEW, headers=bearer(token))
    if answer.status_code != 200:
        raise RuntimeError(f"overview answered {answer.status_code}: {answer.text}")
    return answer


def prepare_travellers(system: RunningSystem, users: int, bookings: int) -> list[str]:
    """Registered travellers with `bookings` confirmed trips each; their access tokens."""
    tokens: list[str] = []
    with system.client() as client:
        for index in range(users):
            _, issued = register_and_login(client, f"Bench{index}")
            tokens.append(issued["access_token"])
        if bookings:
            hotel = make_hotel(system, rooms=users * bookings)
            flight = make_flight(system, seats=users * bookings)
            pending: list[tuple[str, str]] = []
            for token in tokens:
                for _ in range(bookings):
                    answer = book(client, token, trip(hotel, flight))
                    if answer.status_code not in (201, 202):
                        raise RuntimeError(f"booking answered {answer.status_code}: {answer.text}")
                    pending.append((token, answer.json()["id"]))
            deadline = time.monotonic() + 120
            for token, booking_id in pending:
                while True:
                    got = client.get(f"/api/v1/bookings/{booking_id}", headers=bearer(token))
                    status = got.json()["status"]
                    if status in FINAL:
                        if status != "CONFIRMED":
                            raise RuntimeError(f"booking {booking_id} ended {status}")
                        break
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"booking {booking_id} still {status}")
                    time.sleep(0.1)
    return tokens


def queued_events(rabbitmq: RabbitMQServer, vhost: str) -> int:
    """Events still to be handled: in consumed queues and retry queues, ready or unacked.

    Dead-letter and unroutable queues are left out: what is there stays there.
    """
    listed = rabbitmq.ctl(
        "list_queues", "-p", vhost, "--quiet", "--no-table-headers", "name", "messages", "consumers"
    )
    pending = 0
    for line in listed.splitlines():
        if not line.strip():
            continue
        name, messages, consumers = line.rsplit(maxsplit=2)
        if int(consumers) > 0 or ".retry." in name:
            pending += int(messages)
    return pending


def settle(
    system: RunningSystem,
    tokens: Sequence[str],
    bookings: int,
    events: tuple[RabbitMQServer, str],
) -> None:
    """Wait until the overviews are complete and final, and no event is left to consume.

    Registrations and bookings announce themselves with events (welcome and booking
    notifications, and then cache invalidations); a run started before they are all
    through would measure their aftermath. Each traveller ends with `bookings` trips and
    `1 + bookings` unread notifications (welcome, and one per confirmed trip).
    """
    previous: list[Any] | None = None
    quiet_since = time.monotonic()
    deadline = quiet_since + SETTLE_TIMEOUT_S
    with system.client() as client:
        while True:
            bodies = [overview(client, token).json() for token in tokens]
            now = time.monotonic()
            final = all(
                not body["degraded"]
                and body["bookings"]["total"] == bookings
                and body["notifications"]["unread"] == 1 + bookings
                for body in bodies
            )
            if bodies != previous or not final:
                previous, quiet_since = bodies, now
            elif now - quiet_since >= SETTLE_QUIET_S and queued_events(*events) == 0:
                return
            if now > deadline:
                raise TimeoutError(
                    "the overviews did not settle: "
                    + json.dumps([body.get("degraded") for body in bodies])
                )
            time.sleep(0.25)


def warm_up_cache(system: RunningSystem, tokens: Sequence[str]) -> tuple[int, int]:
    """Load every traveller's overview; then (hits, travellers) on reading them again."""
    with system.client() as client:
        for token in tokens:
            overview(client, token)
        again = [overview(client, token).headers.get("x-cache") for token in tokens]
    return again.count("hit"), len(tokens)


@dataclass(frozen=True)
class CacheCounters:
    """The gateway's cache counters: overview hits and misses, back-end errors by operation."""

    hits: int
    misses: int
    errors: dict[str, int]

    def __sub__(self, before: CacheCounters) -> CacheCounters:
        return CacheCounters(
            hits=self.hits - before.hits,
            misses=self.misses - before.misses,
            errors={
                op: n - before.errors.get(op, 0)
                for op, n in self.errors.items()
                if n - before.errors.get(op, 0)
            },
        )


def cache_counters(system: RunningSystem) -> CacheCounters | None:
    """From the gateway's /metrics; None when it has no cache (the cold system)."""
    text = httpx.get(f"{system.url}/metrics", timeout=10).text
    samples: dict[str, int] = {}
    for match in re.finditer(
        r'^wayfare_cache_(hits|misses|errors)_total\{(namespace|operation)="([^"]+)"\} (\S+)$',
        text,
        re.MULTILINE,
    ):
        samples[f"{match.group(1)}:{match.group(3)}"] = int(float(match.group(4)))
    if "hits:overview" not in samples:
        return None
    return CacheCounters(
        hits=samples["hits:overview"],
        misses=samples.get("misses:overview", 0),
        errors={k.split(":", 1)[1]: n for k, n in samples.items() if k.startswith("errors:")},
    )


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    system: RunningSystem,
    watched: Sequence[Watched],
    files: tuple[Path, Path],
    args: argparse.Namespace,
) -> Measurement:
    script, tokens = files
    wrk_args = {"cpu": args.client_cpu, "connections": args.connections}
    if args.warmup > 0:
        # Fills the connection pools (gateway to services, services to PostgreSQL, Redis).
        run_wrk(system.url, script, tokens, duration=args.warmup, **wrk_args)
    counters_before = cache_counters(system)
    cpu_before = cpu_by_group(watched)
    gateway = next(w.pid for w in watched if w.group == "gateway")
    split_before = cpu_split(gateway)
    cores_before = core_busy_seconds(args.server_cpu), core_busy_seconds(args.client_cpu)
    wrk_before = _children_cpu_seconds()
    started = time.monotonic()
    result = run_wrk(system.url, script, tokens, duration=args.duration, **wrk_args)
    wall = time.monotonic() - started
    wrk_spent = _children_cpu_seconds() - wrk_before
    cpu_after = cpu_by_group(watched)
    split_after = cpu_split(gateway)
    server_core = core_busy_seconds(args.server_cpu) - cores_before[0]
    client_core = core_busy_seconds(args.client_cpu) - cores_before[1]
    counters_after = cache_counters(system)
    spent = {group: cpu_after[group] - cpu_before[group] for group in GROUPS}
    ours = sum(spent.values())
    counters = None
    if counters_before is not None and counters_after is not None:
        counters = counters_after - counters_before
    return Measurement(
        wrk=result,
        cpu_us={g: spent[g] / max(1, result.requests) * 1e6 for g in GROUPS},
        core_busy=server_core / wall,
        others=max(0.0, server_core - ours) / wall,
        client_core_busy=client_core / wall,
        wrk_cpu=wrk_spent / wall,
        counters=counters,
        gateway_user_us=(split_after[0] - split_before[0]) / max(1, result.requests) * 1e6,
        gateway_sys_us=(split_after[1] - split_before[1]) / max(1, result.requests) * 1e6,
    )


def run_phase(
    phase: Phase,
    servers: tuple[PostgresServer, RedisServer, RabbitMQServer],
    directory: Path,
    index: int,
    args: argparse.Namespace,
) -> tuple[Measurement, str | None]:
    postgres, redis, rabbitmq = servers
    vhost = f"bench_{phase.name}"
    rabbitmq.ctl("add_vhost", vhost)
    rabbitmq.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    print(f"\n== {phase.name}: cache {'on (Redis)' if phase.cache else 'off'}", flush=True)
    with distributed(
        directory / phase.name,
        database_url=postgres.create_database(f"bench_{phase.name}_{os.getpid()}"),
        # A Redis database of its own: rate-limit counters and, warm, the cache.
        redis_url=f"redis://127.0.0.1:{redis.port}/{index + 1}",
        broker_url=f"{rabbitmq.url}{vhost}",
        WAYFARE_CACHE_ENABLED="true" if phase.cache else "false",
        WAYFARE_RATE_LIMIT_DEFAULT="100000000/minute",
        WAYFARE_LOG_LEVEL="warning",
        # Outlives the run, so no token expires mid-measurement.
        WAYFARE_ACCESS_TOKEN_TTL="86400",  # noqa: S106 - a lifetime, not a secret
    ) as systems:
        system = systems[0]
        watched = [*system_processes(system), *infrastructure(postgres, redis, rabbitmq)]
        print_pinning(watched, args)
        started = time.monotonic()
        tokens = prepare_travellers(system, args.users, args.bookings_per_user)
        settle(system, tokens, args.bookings_per_user, (rabbitmq, vhost))
        print(
            f"{len(tokens)} travellers, {args.bookings_per_user} confirmed trip(s) each, "
            f"ready in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        if phase.cache:
            hits, total = warm_up_cache(system, tokens)
            print(f"cache warmed: {hits}/{total} overviews answered from the cache on re-read")
        token_file = directory / f"{phase.name}-tokens.txt"
        token_file.write_text("\n".join(tokens) + "\n")
        script = directory / "overview.lua"
        script.write_text(WRK_SCRIPT)
        m = measure(system, watched, (script, token_file), args)
        r = m.wrk
        print(
            f"{phase.name}: {r.requests_per_s:.0f} req/s  p50 {r.p50_ms:.2f} ms  "
            f"p99 {r.p99_ms:.2f} ms  x-cache hit {r.hit_ratio:.1%}  "
            f"servers' core busy {m.core_busy:.0%} (others {m.others:.0%})  "
            f"wrk's core busy {m.client_core_busy:.0%} (wrk {m.wrk_cpu:.0%})",
            flush=True,
        )
        profile = None
        if args.profile and phase.cache:
            gateway = next(w for w in watched if w.group == "gateway")
            profile = profile_gateway(system, gateway.pid, (script, token_file), args, directory)
        return m, profile


# --- profiling ---------------------------------------------------------------------------


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def profile_gateway(
    system: RunningSystem,
    pid: int,
    files: tuple[Path, Path],
    args: argparse.Namespace,
    directory: Path,
) -> str:
    """py-spy on the gateway during one more warm run; a summary of where its CPU goes."""
    spy = py_spy()
    if spy is None:
        return "py-spy not found: run `uv run --with py-spy python bench/overview.py --profile`"
    output = directory / "gateway.pyspy.txt"
    record = subprocess.Popen(
        [
            "taskset",
            "-c",
            str(args.client_cpu),
            spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(args.duration))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--function",
            # Native stacks need the process paused while sampled; plain ones do not.
            *(["--native"] if args.profile_native else ["--nonblocking"]),
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(0.5)  # attached before the load starts
        script, tokens = files
        result = run_wrk(
            system.url,
            script,
            tokens,
            cpu=args.client_cpu,
            connections=args.connections,
            duration=args.duration,
        )
        _, err = record.communicate(timeout=args.duration + 60)
    finally:
        if record.poll() is None:
            record.kill()
            record.wait(10)
    if record.returncode != 0 or not output.exists():
        return f"py-spy failed ({record.returncode}): {err.decode(errors='replace')}"
    note = f"(during that run: {result.requests_per_s:.0f} req/s under py-spy)"
    return summarize_pyspy(output.read_text(), note)


_AREAS = {
    "redis": "redis client (redis-py)",
    "limits": "rate limit (limits)",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "prometheus_client": "prometheus_client",
    "structlog": "structlog",
    "uvicorn": "uvicorn / httptools",
    "httptools": "uvicorn / httptools",
    "uvloop": "asyncio / uvloop",
    "asyncio": "asyncio / uvloop",
    "aiohttp": "aiohttp",
    "jwt": "jwt",
    "wayfare": "wayfare",
}


def _area(frame: str) -> str:
    """What a py-spy frame `function (path:line)` belongs to: a package, or a stdlib file."""
    path = frame.rpartition("(")[2].rpartition(":")[0]
    if "site-packages/" in path:
        top = path.split("site-packages/", 1)[1].split("/", 1)[0]
    elif "/wayfare/" in path:
        top = "wayfare"
    else:
        parts = path.split("/")
        top = parts[-2] if len(parts) > 1 and parts[-2] == "asyncio" else parts[-1]
    return _AREAS.get(top, top)


def summarize_pyspy(raw: str, note: str, top: int = 18) -> str:
    """Self time by area and by function, and inclusive time of the gateway's own steps."""
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        areas[_area(frames[-1])] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "py-spy recorded no samples"

    def share(n: int) -> str:
        return f"{n / total:6.1%}"

    lines = [f"gateway CPU profile: {total} samples {note}", "self time by area:"]
    lines += [f"  {share(n)}  {area}" for area, n in areas.most_common(top)]
    lines.append("self time by function:")
    lines += [f"  {share(n)}  {frame}" for frame, n in own.most_common(top)]
    lines.append("inclusive time of wayfare and server functions:")
    ours = [
        (frame, n)
        for frame, n in inclusive.most_common()
        if any(k in frame for k in ("wayfare/", "uvicorn/", "redis/", "limits/"))
    ]
    lines += [f"  {share(n)}  {frame}" for frame, n in ours[: top + 12]]
    return "\n".join(lines)


# --- report ------------------------------------------------------------------------------


def print_table(measured: dict[str, Measurement]) -> None:
    header = (
        f"{'phase':<5} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'errors':>6} "
        f"{'degr.':>5} {'x-cache hit':>11} "
        + " ".join(f"{g + ' us':>11}" for g in GROUPS)
        + f" {'core busy':>9}"
    )
    print(header)
    print("-" * len(header))
    for name, m in measured.items():
        r = m.wrk
        print(
            f"{name:<5} {r.requests_per_s:>7.0f} {r.p50_ms:>7.2f} {r.p90_ms:>7.2f} "
            f"{r.p99_ms:>7.2f} {r.socket_errors + r.non_200:>6} {r.degraded:>5} "
            f"{r.hit_ratio:>11.1%} "
            + " ".join(f"{m.cpu_us[g]:>11.0f}" for g in GROUPS)
            + f" {m.core_busy:>9.0%}"
        )
    print("(us = CPU microseconds per answered request, by process group, on the servers' core)")


def report(measured: dict[str, Measurement], args: argparse.Namespace) -> bool:
    cold, warm = measured["cold"], measured["warm"]
    ratio = warm.wrk.requests_per_s / cold.wrk.requests_per_s
    met = ratio >= RATIO_TARGET
    print(
        f"warm / cold throughput: {ratio:.1f}x   "
        f"(target >= {RATIO_TARGET:g}x: {'met' if met else 'MISSED'})"
    )
    print(
        f"p50 {cold.wrk.p50_ms:.2f} -> {warm.wrk.p50_ms:.2f} ms, "
        f"p99 {cold.wrk.p99_ms:.2f} -> {warm.wrk.p99_ms:.2f} ms"
    )
    capacity = {name: 1e6 / sum(m.cpu_us.values()) for name, m in measured.items()}
    print(
        "CPU-bound view (1 / CPU per request of all servers): "
        f"cold {capacity['cold']:.0f}, warm {capacity['warm']:.0f} req/s, "
        f"ratio {capacity['warm'] / capacity['cold']:.1f}x"
    )
    print(
        "gateway CPU per request, user + kernel: "
        + ", ".join(
            f"{name} {m.gateway_user_us:.0f} + {m.gateway_sys_us:.0f} us"
            for name, m in measured.items()
        )
    )
    r = warm.wrk
    print(
        f"hit ratio seen (x-cache, warm): {r.hit_ratio:.2%} "
        f"({r.hits} hit, {r.misses} miss, {r.unmarked} unmarked of {r.requests})"
    )
    if warm.counters is not None:
        c = warm.counters
        errors = ", ".join(f"{op} {n}" for op, n in sorted(c.errors.items())) or "none"
        print(
            "gateway /metrics over the warm run: overview namespace "
            f"{c.hits} hits, {c.misses} misses ({c.hits / max(1, c.hits + c.misses):.2%}); "
            f"cache back-end errors: {errors}"
        )
    ok = True
    for name, m in measured.items():
        if m.wrk.socket_errors or m.wrk.non_200:
            print(f"WARNING: {name}: {m.wrk.socket_errors + m.wrk.non_200} requests failed")
            ok = False
        if m.wrk.degraded:
            print(f"WARNING: {name}: {m.wrk.degraded} answers were degraded (incomplete)")
        if m.others > 0.1:
            print(
                f"WARNING: {name}: processes not started here took {m.others:.0%} of the "
                f"servers' core; the req/s figures are disturbed (the us columns less so)"
            )
        if m.client_core_busy - m.wrk_cpu > 0.1:
            print(
                f"WARNING: {name}: processes not started here took "
                f"{m.client_core_busy - m.wrk_cpu:.0%} of wrk's core; wrk may have been "
                "starved (req/s low, latency high)"
            )
    return met and ok


# --- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--users", type=int, default=20, help="travellers the load rotates over")
    parser.add_argument(
        "--bookings-per-user", type=int, default=1, help="confirmed trips each traveller has"
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of load before each")
    parser.add_argument("--server-cpu", type=int, default=1, help="core for every server")
    parser.add_argument("--client-cpu", type=int, default=0, help="core for wrk")
    parser.add_argument("--profile", action="store_true", help="py-spy the warm gateway")
    parser.add_argument(
        "--profile-native", action="store_true", help="with --profile: C frames too"
    )
    parser.add_argument("--keep", action="store_true", help="keep the data dirs and logs")
    parser.add_argument("--check", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.users < 1 or args.warmup < 0:
        parser.error("--duration, --connections and --users must be positive")
    if args.bookings_per_user < 0:
        parser.error("--bookings-per-user must not be negative")
    available = os.sched_getaffinity(0)
    for cpu in (args.server_cpu, args.client_cpu):
        if cpu not in available:
            parser.error(f"cpu {cpu} is not available (have {sorted(available)})")
    if args.server_cpu == args.client_cpu:
        parser.error("the servers and wrk need separate cores")
    if shutil.which("wrk") is None or shutil.which("taskset") is None:
        parser.error("needs wrk and taskset on PATH")
    return args


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so that every `finally` that stops a server runs.
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="wayfare-bench-overview-"))
    try:
        yield directory
    finally:
        if keep:
            print(f"data dirs and logs kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    # Every server this run starts is a descendant of this process (or of pg_ctl, which it
    # runs), so pinning ourselves first pins them all; wrk alone goes to the other core.
    os.sched_setaffinity(0, {args.server_cpu})
    print(
        f"overview bench: {args.users} travellers, {args.connections} connections, "
        f"{args.duration:g} s per run after {args.warmup:g} s of warm-up; servers on cpu "
        f"{args.server_cpu}, wrk on cpu {args.client_cpu}",
        flush=True,
    )
    measured: dict[str, Measurement] = {}
    profile: str | None = None
    with workspace(args.keep) as directory, contextlib.ExitStack() as stack:
        servers = (
            stack.enter_context(postgres_server()),
            stack.enter_context(redis_server()),
            stack.enter_context(rabbitmq_server()),
        )
        for index, phase in enumerate(PHASES):
            try:
                measured[phase.name], phase_profile = run_phase(
                    phase, servers, directory, index, args
                )
            except Exception:
                for log in sorted((directory / phase.name).glob("*.log")):
                    tail = log.read_text(errors="replace")[-3000:]
                    print(f"--- {phase.name}/{log.name} (tail)\n{tail}", file=sys.stderr)
                raise
            profile = profile or phase_profile
    print()
    print_table(measured)
    print()
    ok = report(measured, args)
    if profile:
        print()
        print(profile)
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
