"""What the audit ingestion and the outbox relay cost, against bare aio-pika, in one run.

    uv run python bench/ingest.py [--events 100000] [--single-events 10000] [--rounds 1]

On a real RabbitMQ and PostgreSQL started here (Debian binaries, temporary dirs):

1. bare      - an aio-pika consumer that only acknowledges (prefetch 1000, one
               `ack(multiple=True)` every 500): the client's ceiling;
2. audit     - the audit service's consumer, `AmqpBus.subscribe_batch` + `ingest` into
               PostgreSQL (batches of 500, as configured by default);
3. single    - the same, one transaction per event: a plain `AmqpBus.subscribe`
               (prefetch 32) with one `ingest([event])` per event, and
               `subscribe_batch(max_batch=1)`; over `--single-events`;
4. publisher - an aio-pika publisher with pipelined confirms (many in flight);
5. relay     - `OutboxRelay.drain()` over rows pre-written to the users' `outbox` table.

Each consumer drains a queue pre-filled through `AmqpBus.publish_many` (not timed);
only the draining, or the publishing, is timed, and the rows and queues are checked
afterwards (exactly N rows with the run's N ids, nothing left or dead-lettered).

Pinning: this script pins itself to the server core (`os.sched_setaffinity`) before it
starts the servers, so RabbitMQ and PostgreSQL (and every backend they fork) inherit
that core; each measured step runs in a fresh Python process started under
`taskset -c <client core>` (bench/ingest_worker.py). The pinning of every process is
read back and printed. Servers, databases and temporary dirs go on exit, failure or
Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from wayfare.kit.testing.servers import (
    PostgresServer,
    RabbitMQServer,
    postgres_server,
    rabbitmq_server,
)

REPO = Path(__file__).resolve().parent.parent
CONSUMER_TARGET = 0.85  # audit ingestion / bare consumer
BATCH_TARGET = 3.0  # audit ingestion / one transaction per event
RELAY_TARGET = 0.80  # outbox relay / bare publisher

Job = dict[str, Any]


# --- processes ---------------------------------------------------------------------------


def worker_env() -> dict[str, str]:
    # The caller's own WAYFARE_* settings (a database URL, say) must not leak in.
    return {k: v for k, v in os.environ.items() if not k.startswith("WAYFARE_")}


def run_job(job: Job, *, cpu: int, timeout: float) -> dict[str, Any]:
    """Run one job of bench/ingest_worker.py pinned to `cpu`; its result, or raise."""
    command = [
        "taskset",
        "-c",
        str(cpu),
        sys.executable,
        "-m",
        "bench.ingest_worker",
        json.dumps(job),
    ]
    try:
        done = subprocess.run(
            command,
            cwd=REPO,
            env=worker_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"job {job['job']} took over {timeout:g} s (killed)") from exc
    if done.returncode != 0:
        raise RuntimeError(
            f"job {job['job']} failed ({done.returncode}):\n{done.stderr[-4000:]}"
            f"{done.stdout[-2000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def rabbitmq_pids(node: str) -> list[int]:
    """The Erlang VM(s) of this run's node: rabbitmq-server passes the name in the env."""
    wanted = f"RABBITMQ_NODENAME={node}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not (entry / "comm").read_text().startswith("beam"):
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return sorted(found)


def thread_affinities(pid: int) -> str:
    """The distinct CPU lists of all of a process's threads (schedulers bind their own)."""
    lists = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Cpus_allowed_list:"):
                lists.add(line.split()[1])
    return " ".join(sorted(lists))


def server_pids(pg: PostgresServer, rabbit: RabbitMQServer) -> tuple[int, list[int]]:
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    return postmaster, rabbitmq_pids(rabbit.node)


def machine_busy() -> float:
    """CPU seconds spent by everything on the machine since boot, from /proc/stat."""
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


def wait_until_quiet(limit: float, patience: float) -> float:
    """Wait (up to `patience` s) until the machine, our idle servers included, uses under
    `limit` cores over a second: other people's test runs would skew the figures."""
    started = time.monotonic()
    while True:
        before = machine_busy()
        time.sleep(1.0)
        load = machine_busy() - before
        waited = time.monotonic() - started
        if load < limit or waited >= patience:
            return waited


def print_pinning(pg: PostgresServer, rabbit: RabbitMQServer, args: argparse.Namespace) -> None:
    postmaster, beams = server_pids(pg, rabbit)
    print("pinning (read back from /proc, every thread):")
    print(
        f"  this script  pid {os.getpid():<7} cpu {thread_affinities(os.getpid())}  "
        "(pinned itself before starting the servers; idle while measuring)"
    )
    print(
        f"  PostgreSQL   pid {postmaster:<7} cpu {thread_affinities(postmaster)}  "
        f"postmaster, port {pg.port}; its backends inherit the core"
    )
    for pid in beams:
        print(
            f"  RabbitMQ     pid {pid:<7} cpu {thread_affinities(pid)}  "
            f"beam.smp, port {rabbit.port}"
        )
    try:
        schedulers = rabbit.ctl("eval", "erlang:system_info(schedulers_online).").strip()
        print(f"  RabbitMQ     {schedulers} Erlang scheduler(s) online")
    except subprocess.SubprocessError:
        pass
    print(
        f"  measured     a fresh `taskset -c {args.client_cpu} python -m bench.ingest_worker` "
        f"per step ({args.loop} event loop, as `wayfare serve` uses)"
    )


# --- the steps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    key: str
    label: str
    what: str


STEPS = [
    Step("bare", "(1) bare", "aio-pika consume, prefetch {prefetch}, ack(multiple)/{ack_every}"),
    Step("audit", "(2) audit", "AmqpBus.subscribe_batch({max_batch}) + ingest -> PostgreSQL"),
    Step("single", "(3) single", "AmqpBus.subscribe(prefetch 32), ingest([event]) each"),
    Step("batch1", "(3') batch1", "AmqpBus.subscribe_batch(max_batch=1) + ingest"),
    Step("publish", "(4) publisher", "aio-pika publish, pipelined confirms"),
    Step("relay", "(5) relay", "OutboxRelay.drain() -> AmqpBus.publish_many"),
]


@dataclass
class Runner:
    args: argparse.Namespace
    amqp: str
    audit_db: str
    users_db: str
    profile_dir: Path | None
    server_pids: list[int]
    results: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fills: list[float] = field(default_factory=list)

    def job(self, name: str, **spec: Any) -> Job:
        job: Job = {
            "job": name,
            "amqp": self.amqp,
            "audit_db": self.audit_db,
            "users_db": self.users_db,
            "loop": self.args.loop,
            "server_pids": self.server_pids,
            **spec,
        }
        if self.profile_dir is not None and name in ("consume", "publish", "relay"):
            job["profile"] = str(self.profile_dir / f"{spec['queue']}.prof")
        return job

    def run(self, job: Job, count: int) -> dict[str, Any]:
        # Generous: a tenth of the slowest rate seen on this kind of machine, plus start-up.
        return run_job(job, cpu=self.args.client_cpu, timeout=120 + count / 100)

    def measure(self, job: Job, count: int) -> dict[str, Any]:
        waited = wait_until_quiet(self.args.quiet_below, self.args.quiet_patience)
        if waited >= 1.5:
            print(f"    (waited {waited:.0f} s for the machine to go quiet)", flush=True)
        return self.run(job, count)

    def fill(self, queue: str, nonce: int, count: int) -> None:
        job = self.job("fill", queue=queue, nonce=nonce, count=count, chunk=self.args.chunk)
        result = self.run(job, count)
        self.fills.append(result["rate"])

    def record(self, key: str, result: dict[str, Any]) -> None:
        self.results.setdefault(key, []).append(result)
        rate = result["rate"]
        print(
            f"  {key:<8} {result['count']:>7} events in {result['seconds']:6.2f} s "
            f"= {rate:8.0f} /s  (others used {others(result):.2f} cores)  "
            f"{inner_text(key, result)}{check_text(key, result)}",
            flush=True,
        )

    def consume(self, key: str, round_: int, count: int, **spec: Any) -> None:
        queue, nonce = f"bench.{key}.r{round_}", secrets.randbits(32)
        self.fill(queue, nonce, count)
        job = self.job(
            "consume",
            queue=queue,
            nonce=nonce,
            count=count,
            timeout=60 + count / 100,
            **spec,
        )
        self.record(key, self.measure(job, count))
        self.show_profile(job)

    def show_profile(self, job: Job) -> None:
        if "profile" in job and Path(job["profile"]).exists():
            print(f"    profile of {job['queue']} ({job['profile']}), top by own time:")
            stats = pstats.Stats(job["profile"], stream=sys.stdout)
            stats.sort_stats("tottime").print_stats(self.args.profile_lines)
            stats.sort_stats("cumulative").print_stats(self.args.profile_lines)

    def round(self, round_: int) -> None:
        args, steps = self.args, set(self.args.steps)
        if "bare" in steps:
            self.consume(
                "bare",
                round_,
                args.events,
                mode="bare",
                prefetch=args.prefetch,
                ack_every=args.ack_every,
            )
        if "audit" in steps:
            self.consume(
                "audit",
                round_,
                args.events,
                mode="batch",
                max_batch=args.max_batch,
                max_wait=args.max_wait,
            )
        if "single" in steps:
            self.consume("single", round_, args.single_events, mode="subscribe", prefetch=32)
        if "batch1" in steps:
            self.consume(
                "batch1", round_, args.single_events, mode="batch", max_batch=1, max_wait=0.2
            )
        if "publish" in steps:
            queue = f"bench.publish.r{round_}"
            job = self.job(
                "publish",
                queue=queue,
                nonce=secrets.randbits(32),
                count=args.publish_events,
                window=args.publish_window,
                timeout=60 + args.publish_events / 100,
            )
            self.record("publish", self.measure(job, args.publish_events))
            self.show_profile(job)
        if "relay" in steps:
            queue = f"bench.relay.r{round_}"
            count, nonce = args.publish_events, secrets.randbits(32)
            self.run(self.job("outbox-fill", queue=queue, nonce=nonce, count=count), count)
            job = self.job("relay", queue=queue, count=count, timeout=60 + count / 100)
            self.record("relay", self.measure(job, count))
            self.show_profile(job)


def inner_text(key: str, result: dict[str, Any]) -> str:
    """Where the wall time went, for the steps that can tell."""
    if "inner_seconds" not in result:
        return ""
    share = float(result["inner_seconds"]) / float(result["seconds"])
    if key == "relay":
        return (
            f"publish_many {share:.0%} of the time ({result['publish_ms_per_pass']:.0f} ms a "
            f"pass), PostgreSQL the rest ({result['db_ms_first_tenth']:.0f} ms a pass early, "
            f"{result['db_ms_last_tenth']:.0f} ms late); "
        )
    if key == "audit":
        return f"in ingest {share:.0%} of the time; "
    return ""


def check_text(key: str, result: dict[str, Any]) -> str:
    if key in ("audit", "single", "batch1"):
        ok = result["rows_exact"] and result["left_in_queue"] == 0
        ok = ok and result["dead_lettered"] == 0
        return (
            f"{result['rows']} rows, {result['distinct_ids']} distinct ids, "
            f"{result['left_in_queue']} left, {result['dead_lettered']} dead: "
            f"{'OK' if ok else 'MISMATCH'}"
        )
    if key == "bare":
        ok = result["left_in_queue"] == 0 and result["dead_lettered"] == 0
        return f"{result['left_in_queue']} left in queue: {'OK' if ok else 'MISMATCH'}"
    if key == "publish":
        return f"{result['left_in_queue']} in sink queue: OK"
    return f"{result['left_in_queue']} in sink queue, {result['pending']} rows pending: OK"


def verified(key: str, result: dict[str, Any]) -> bool:
    return check_text(key, result).endswith("OK")


# --- report ------------------------------------------------------------------------------


def median(results: Sequence[dict[str, Any]], key: str) -> float:
    return float(statistics.median(float(r[key]) for r in results))


def others(result: dict[str, Any]) -> float:
    """Cores used by everything that is neither the measured process nor our servers."""
    return float(result["other_cpu_seconds"]) / float(result["seconds"])


def print_table(runner: Runner) -> dict[str, float]:
    """One line per step, from its best round: interference only ever slows a run down,
    so the fastest of several is the closest to what the code itself can do."""
    args = runner.args
    header = (
        f"{'step':<13} {'what':<54} {'events':>7} {'events/s':>9} {'median':>7} "
        f"{'client':>7} {'us/event':>8} {'servers':>7} {'us/event':>8} {'others':>6}  check"
    )
    print(f"{'':<94}{'-- client --':>16} {'-- servers --':>16}")
    print(header)
    print("-" * len(header))
    rates: dict[str, float] = {}
    for step in STEPS:
        results = runner.results.get(step.key)
        if not results:
            continue
        best = max(results, key=lambda r: float(r["rate"]))
        rates[step.key] = float(best["rate"])
        seconds, count = float(best["seconds"]), float(best["count"])
        client, servers = float(best["cpu_seconds"]), float(best["server_cpu_seconds"])
        ok = all(verified(step.key, r) for r in results)
        what = step.what.format(**vars(args))
        print(
            f"{step.label:<13} {what:<54} {best['count']:>7} {rates[step.key]:>9.0f} "
            f"{median(results, 'rate'):>7.0f} {client / seconds:>7.2f} "
            f"{client / count * 1e6:>8.1f} {servers / seconds:>7.2f} "
            f"{servers / count * 1e6:>8.1f} {others(best):>6.2f}  {'OK' if ok else 'FAILED'}"
        )
    print(
        f"events/s: the best of {args.rounds} round(s), and their median. client: the "
        f"measured Python process (core {args.client_cpu}); servers: RabbitMQ + PostgreSQL "
        f"(core {args.server_cpu}); each as cores kept busy and CPU microseconds per event. "
        "others: cores used meanwhile by anything else on the machine (noise)."
    )
    if runner.fills:
        print(
            f"pre-fills through AmqpBus.publish_many in chunks of {args.chunk}: "
            f"median {statistics.median(runner.fills):.0f} events/s (not part of any figure)"
        )
    return rates


def print_ratios(rates: dict[str, float]) -> bool:
    checks: list[tuple[str, float, str, bool]] = []
    if "audit" in rates and "bare" in rates:
        share = rates["audit"] / rates["bare"]
        checks.append(
            (
                "(2) audit / (1) bare consumer",
                share,
                f">= {CONSUMER_TARGET:.0%}",
                share >= CONSUMER_TARGET,
            )
        )
    singles = {k: rates[k] for k in ("single", "batch1") if k in rates}
    if "audit" in rates and singles:
        best = max(singles, key=lambda k: singles[k])
        times = rates["audit"] / singles[best]
        checks.append(
            (
                f"(2) audit / (3) per event ({best}, the faster)",
                times,
                f">= {BATCH_TARGET:g}x",
                times >= BATCH_TARGET,
            )
        )
    if "relay" in rates and "publish" in rates:
        share = rates["relay"] / rates["publish"]
        checks.append(
            (
                "(5) relay / (4) bare publisher",
                share,
                f">= {RELAY_TARGET:.0%}",
                share >= RELAY_TARGET,
            )
        )
    for text, value, target, ok in checks:
        shown = f"{value:.2f}x" if "x" in target else f"{value:.1%}"
        print(f"{text:<48} {shown:>8}   (target {target}: {'met' if ok else 'MISSED'})")
    return all(ok for *_, ok in checks)


# --- main --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000, help="events for (1) and (2)")
    parser.add_argument(
        "--single-events", type=int, default=10_000, help="events for the per-event runs (3)"
    )
    parser.add_argument(
        "--publish-events", type=int, default=None, help="events for (4) and (5) [--events]"
    )
    parser.add_argument("--rounds", type=int, default=1, help="repeat every step; medians")
    parser.add_argument(
        "--steps",
        nargs="+",
        choices=[s.key for s in STEPS],
        default=[s.key for s in STEPS],
        help="which steps to run",
    )
    parser.add_argument("--max-batch", type=int, default=500, help="(2) max_batch")
    parser.add_argument("--max-wait", type=float, default=0.2, help="(2) max_wait, seconds")
    parser.add_argument("--prefetch", type=int, default=1000, help="(1) prefetch")
    parser.add_argument("--ack-every", type=int, default=500, help="(1) multiple-ack interval")
    parser.add_argument("--publish-window", type=int, default=1000, help="(4) confirms in flight")
    parser.add_argument("--chunk", type=int, default=1000, help="pre-fill publish_many chunk")
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--server-cpu", type=int, default=1, help="core for RabbitMQ + PostgreSQL")
    parser.add_argument("--client-cpu", type=int, default=0, help="core for the measured Python")
    parser.add_argument(
        "--profile", type=Path, default=None, help="cProfile each measured step into this dir"
    )
    parser.add_argument("--profile-lines", type=int, default=25, help="profile lines shown")
    parser.add_argument(
        "--quiet-below",
        type=float,
        default=0.15,
        help="before each measured step, wait until the machine uses fewer cores than this",
    )
    parser.add_argument(
        "--quiet-patience", type=float, default=60.0, help="...but no longer than this (s)"
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.publish_events is None:
        args.publish_events = args.events
    if min(args.events, args.single_events, args.publish_events, args.rounds) < 1:
        parser.error("counts and --rounds must be positive")
    available = os.sched_getaffinity(0)
    for cpu in (args.server_cpu, args.client_cpu):
        if cpu not in available:
            parser.error(f"cpu {cpu} is not available (have {sorted(available)})")
    if args.server_cpu == args.client_cpu:
        parser.error("the servers and the measured consumer need separate cores")
    if shutil.which("taskset") is None:
        parser.error("needs taskset on PATH")
    return args


def _raise_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so the `finally`s that stop the servers run.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    started = time.monotonic()
    # Before the servers start, so that they and everything they fork inherit the core.
    os.sched_setaffinity(0, {args.server_cpu})
    with rabbitmq_server() as rabbit, postgres_server() as pg:
        profile_dir = None
        if args.profile is not None:
            profile_dir = args.profile.resolve()
            profile_dir.mkdir(parents=True, exist_ok=True)
            print("PROFILING: cProfile slows the measured steps; the figures below are not.")
        postmaster, beams = server_pids(pg, rabbit)
        runner = Runner(
            args,
            amqp=rabbit.url,
            audit_db=pg.create_database("audit"),
            users_db=pg.create_database("users"),
            profile_dir=profile_dir,
            server_pids=[postmaster, *beams],
        )
        print_pinning(pg, rabbit, args)
        run_job(runner.job("prepare"), cpu=args.client_cpu, timeout=120)
        print(
            f"{args.events} events for (1)/(2), {args.single_events} for (3), "
            f"{args.publish_events} for (4)/(5)"
        )
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_}:", flush=True)
            runner.round(round_)
        print()
        rates = print_table(runner)
        print()
        met = print_ratios(rates)
        ok = all(verified(k, r) for k, rs in runner.results.items() for r in rs)
        print(f"all counts verified: {'yes' if ok else 'NO'}; {time.monotonic() - started:.0f} s")
    if not ok:
        return 1
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
