"""What the gateway costs: an authenticated `GET /users/me` three ways, in one run.

1. direct      - wrk -> users service
2. passthrough - wrk -> bare aiohttp proxy (bench/passthrough.py) -> users service
3. gateway     - wrk -> Wayfare gateway (token check, rate limit, access log) -> users

    uv run python bench/gateway.py [--duration 10] [--connections 64] [--rounds 1]

The servers share one core and wrk gets the other, so that the load generator does not
steal CPU from what it measures, and so that (2) and (3) differ only by the work the
gateway does per request. Everything runs on loopback in a temporary data dir, and
every process started here is stopped on exit, failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ADMIN_PASSWORD = "bench admin passphrase"  # noqa: S105 - a throwaway local account
USER_EMAIL = "bench-traveller@example.com"
USER_PASSWORD = "bench traveller passphrase"  # noqa: S105 - same
THROUGHPUT_TARGET = 0.75  # gateway req/s as a share of the pass-through's
ADDED_P50_TARGET_MS = 2.0  # p50 the gateway may add, at 64 connections


# --- wrk ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_wrk(output: str) -> WrkResult:
    """Figures from `wrk --latency` output; a missing figure is an error, never a zero."""

    def find(pattern: str) -> str:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output lacks {pattern!r}:\n{output}")
        return match.group(1)

    percentile = {p: _ms(find(rf"^\s+{p}%\s+(\S+)")) for p in (50, 75, 90, 99)}
    socket = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return WrkResult(
        requests_per_s=float(find(r"^Requests/sec:\s+([\d.]+)")),
        p50_ms=percentile[50],
        p75_ms=percentile[75],
        p90_ms=percentile[90],
        p99_ms=percentile[99],
        requests=int(find(r"^\s+(\d+) requests in")),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(n) for n in socket.groups()) if socket else 0,
    )


def run_wrk(url: str, token: str, *, cpu: int, connections: int, duration: float) -> WrkResult:
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
        "-H",
        f"Authorization: Bearer {token}",
        "--latency",
        url,
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration + 60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


# --- processes ---------------------------------------------------------------------------


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Fleet:
    """The processes this run started; `stop` ends exactly those, by process group."""

    directory: Path
    servers: list[Server] = field(default_factory=list)

    def start(
        self, name: str, command: Sequence[str], *, env: dict[str, str], cpu: int, port: int
    ) -> Server:
        log = self.directory / f"{name}.log"
        with open(log, "ab") as out:
            process = subprocess.Popen(
                ["taskset", "-c", str(cpu), *command],
                env=env,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                # A file, not a pipe: nobody reads a pipe while wrk runs, and a full pipe
                # would block the server's logging and so the server.
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own group, so stopping it reaches any child it spawns and so a
                # Ctrl-C in this terminal reaches it only through `stop`.
                start_new_session=True,
            )
        server = Server(name, f"http://{HOST}:{port}", process, log)
        self.servers.append(server)
        return server

    def stop(self) -> None:
        for server in reversed(self.servers):
            _stop(server.process)
        self.servers.clear()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def request(
    url: str,
    path: str,
    *,
    method: str = "GET",
    body: object | None = None,
    token: str | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    headers = {"content-type": "application/json"} if body is not None else {}
    if token:
        headers["authorization"] = f"Bearer {token}"
    try:
        connection.request(
            method, path, body=json.dumps(body) if body is not None else None, headers=headers
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def wait_ready(server: Server, path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.process.returncode}:\n{_tail(server.log)}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            if request(server.url, path, timeout=1.0)[0] == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{server.name} not ready within {timeout} s:\n{_tail(server.log)}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads included."""
    # Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_busy_seconds(cpu: int) -> float:
    """Time a core spent on anything but idling, from /proc/stat (steal counts as busy)."""
    for line in Path("/proc/stat").read_text().splitlines():
        name, *ticks = line.split()
        if name == f"cpu{cpu}":
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, ticks[:8])
            busy = user + nice + system + irq + softirq + steal
            return busy / os.sysconf("SC_CLK_TCK")
    raise ValueError(f"no cpu{cpu} in /proc/stat")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def affinity(pid: int) -> str:
    cpus = sorted(os.sched_getaffinity(pid))
    return ",".join(str(c) for c in cpus)


# --- the run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    # The servers a request to this target passes through, for CPU per request.
    path: tuple[str, ...]


@dataclass(frozen=True)
class Measurement:
    wrk: WrkResult
    # CPU microseconds each server spent per answered request, and how busy the servers'
    # core was: near 100% means throughput is bounded by that CPU, and then req/s is
    # 1 / (sum of the CPU per request of the servers in the path).
    cpu_us: dict[str, float]
    core_busy: float
    # Share of each core taken by processes this run did not start: anything much above
    # zero means the figures are disturbed (e.g. a test suite running alongside).
    server_core_others: float
    client_core_others: float


def measure(
    target: Target, token: str, servers: Sequence[Server], *, cpu: int, args: argparse.Namespace
) -> Measurement:
    if args.warmup > 0:
        # Fills the connection pools and warms caches (token, JWKS, SQLite pages).
        run_wrk(target.url, token, cpu=cpu, connections=args.connections, duration=args.warmup)
    server_cpu = args.server_cpu
    before = {s.name: cpu_seconds(s.process.pid) for s in servers}
    cores_before = core_busy_seconds(server_cpu), core_busy_seconds(cpu)
    wrk_before = children_cpu_seconds()
    started = time.monotonic()
    result = run_wrk(
        target.url, token, cpu=cpu, connections=args.connections, duration=args.duration
    )
    wall = time.monotonic() - started
    wrk_spent = children_cpu_seconds() - wrk_before
    server_core = core_busy_seconds(server_cpu) - cores_before[0]
    client_core = core_busy_seconds(cpu) - cores_before[1]
    spent = {s.name: cpu_seconds(s.process.pid) - before[s.name] for s in servers}
    ours = sum(spent.values())
    return Measurement(
        wrk=result,
        cpu_us={name: spent[name] / max(1, result.requests) * 1e6 for name in target.path},
        # wrk's own start and stop are inside `wall`, so this reads a little low.
        core_busy=ours / wall,
        # Kernel work done for our processes in interrupts is not charged to them, so a
        # few percent here is normal.
        server_core_others=max(0.0, server_core - ours) / wall,
        client_core_others=max(0.0, client_core - wrk_spent) / wall,
    )


def base_env(data_dir: Path) -> dict[str, str]:
    # The caller's own WAYFARE_* settings (a database URL, say) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYFARE_")}
    env.update(
        {
            "WAYFARE_DATA_DIR": str(data_dir),
            "WAYFARE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "WAYFARE_LOG_LEVEL": "info",
            "WAYFARE_LOG_FORMAT": "json",
            # Outlives any run of this script, so no token expires mid-measurement.
            "WAYFARE_ACCESS_TOKEN_TTL": "86400",
        }
    )
    return env


def start_system(fleet: Fleet, data_dir: Path, *, cpu: int) -> tuple[list[Target], str]:
    env = base_env(data_dir)
    migrated = subprocess.run(
        # Users only: it is the one service measured here.
        [sys.executable, "-m", "wayfare", "migrate", "users"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if migrated.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{migrated.stdout}\n{migrated.stderr}")

    users_port, proxy_port, gateway_port = free_port(), free_port(), free_port()
    users = fleet.start(
        "users",
        [
            sys.executable,
            "-m",
            "wayfare",
            "serve",
            "users",
            "--host",
            HOST,
            "--port",
            f"{users_port}",
        ],
        env=env,
        cpu=cpu,
        port=users_port,
    )
    wait_ready(users, "/readyz")
    token = login(users.url)

    proxy = fleet.start(
        "passthrough",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.passthrough:app",
            "--app-dir",
            str(REPO),
            "--host",
            HOST,
            "--port",
            str(proxy_port),
            # The same server stack as `wayfare serve`: uvloop, httptools, no access
            # log and no Server header.
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--no-server-header",
            "--lifespan",
            "on",
            "--log-level",
            "warning",
        ],
        env={**env, "BENCH_UPSTREAM": users.url},
        cpu=cpu,
        port=proxy_port,
    )
    gateway = fleet.start(
        "gateway",
        [
            sys.executable,
            "-m",
            "wayfare",
            "serve",
            "gateway",
            "--host",
            HOST,
            "--port",
            str(gateway_port),
        ],
        env={
            **env,
            # Only users: the gateway answers 503 on the routes of services it has no URL
            # for, and none of those is called here.
            "WAYFARE_UPSTREAMS": json.dumps({"users": [users.url]}),
            # High enough never to refuse during the run, yet every request still
            # pays for a rate-limit check.
            "WAYFARE_RATE_LIMIT_DEFAULT": "100000000/minute",
            # Access logging on: one JSON line per request is part of the price.
            "WAYFARE_LOG_LEVEL": "info",
        },
        cpu=cpu,
        port=gateway_port,
    )
    wait_ready(proxy, "/healthz")
    wait_ready(gateway, "/readyz")
    targets = [
        Target("direct", f"{users.url}/users/me", ("users",)),
        Target("passthrough", f"{proxy.url}/users/me", ("passthrough", "users")),
        Target("gateway", f"{gateway.url}/api/v1/users/me", ("gateway", "users")),
    ]
    return targets, token


def login(users_url: str) -> str:
    status, body = request(
        users_url,
        "/auth/register",
        method="POST",
        body={"email": USER_EMAIL, "password": USER_PASSWORD, "name": "Bench"},
    )
    if status != 201:
        raise RuntimeError(f"register answered {status}: {body!r}")
    status, body = request(
        users_url,
        "/auth/login",
        method="POST",
        body={"email": USER_EMAIL, "password": USER_PASSWORD},
    )
    if status != 200:
        raise RuntimeError(f"login answered {status}: {body!r}")
    token: str = json.loads(body)["access_token"]
    return token


def check_targets(targets: Sequence[Target], token: str) -> None:
    """All three must answer the same user, or the comparison would be meaningless."""
    bodies = {}
    for target in targets:
        base, path = split_url(target.url)
        status, body = request(base, path, token=token)
        if status != 200:
            raise RuntimeError(f"{target.name}: GET {target.url} answered {status}: {body!r}")
        bodies[target.name] = json.loads(body)["email"]
    if set(bodies.values()) != {USER_EMAIL}:
        raise RuntimeError(f"the targets disagree on who is calling: {bodies}")


def split_url(url: str) -> tuple[str, str]:
    """`http://host:port/path` as (`http://host:port`, `/path`)."""
    authority, _, path = url.removeprefix("http://").partition("/")
    return f"http://{authority}", f"/{path}"


def median_measurement(runs: Sequence[Measurement]) -> Measurement:
    # Each figure's own median: with several rounds, one noisy round does not decide.
    results = [m.wrk for m in runs]
    return Measurement(
        wrk=WrkResult(
            requests_per_s=statistics.median(r.requests_per_s for r in results),
            p50_ms=statistics.median(r.p50_ms for r in results),
            p75_ms=statistics.median(r.p75_ms for r in results),
            p90_ms=statistics.median(r.p90_ms for r in results),
            p99_ms=statistics.median(r.p99_ms for r in results),
            requests=sum(r.requests for r in results),
            non_2xx=sum(r.non_2xx for r in results),
            socket_errors=sum(r.socket_errors for r in results),
        ),
        cpu_us={name: statistics.median(m.cpu_us[name] for m in runs) for name in runs[0].cpu_us},
        core_busy=statistics.median(m.core_busy for m in runs),
        server_core_others=max(m.server_core_others for m in runs),
        client_core_others=max(m.client_core_others for m in runs),
    )


def print_table(targets: Sequence[Target], measured: dict[str, Measurement]) -> None:
    header = (
        f"{'target':<12} {'path':<17} {'req/s':>7} {'p50 ms':>7} {'p75 ms':>7} "
        f"{'p90 ms':>7} {'p99 ms':>7} {'errors':>6} {'users us/req':>12} "
        f"{'proxy us/req':>12} {'core busy':>9}"
    )
    print(header)
    print("-" * len(header))
    for target in targets:
        m = measured[target.name]
        r = m.wrk
        proxy = target.path[0] if len(target.path) > 1 else None
        proxy_cpu = f"{m.cpu_us[proxy]:>12.0f}" if proxy else f"{'-':>12}"
        print(
            f"{target.name:<12} {split_url(target.url)[1]:<17} {r.requests_per_s:>7.0f} "
            f"{r.p50_ms:>7.2f} {r.p75_ms:>7.2f} {r.p90_ms:>7.2f} {r.p99_ms:>7.2f} "
            f"{r.non_2xx + r.socket_errors:>6} {m.cpu_us['users']:>12.0f} {proxy_cpu} "
            f"{m.core_busy:>9.0%}"
        )


def print_ratios(measured: dict[str, Measurement], connections: int) -> bool:
    results = {name: m.wrk for name, m in measured.items()}
    direct, proxy, gateway = results["direct"], results["passthrough"], results["gateway"]
    share = gateway.requests_per_s / proxy.requests_per_s
    over_direct = gateway.p50_ms - direct.p50_ms
    over_proxy = gateway.p50_ms - proxy.p50_ms
    checks = [
        (
            f"gateway / passthrough throughput: {share:6.1%}",
            f"target >= {THROUGHPUT_TARGET:.0%}",
            share >= THROUGHPUT_TARGET,
        ),
        (
            f"p50 added over direct:           {over_direct:+6.2f} ms",
            f"target <= {ADDED_P50_TARGET_MS:.0f} ms",
            over_direct <= ADDED_P50_TARGET_MS,
        ),
        (
            f"p50 added over passthrough:      {over_proxy:+6.2f} ms",
            f"target <= {ADDED_P50_TARGET_MS:.0f} ms",
            over_proxy <= ADDED_P50_TARGET_MS,
        ),
    ]
    for text, target, ok in checks:
        print(f"{text}   ({target}: {'met' if ok else 'MISSED'})")
    print(
        "for context: "
        f"gateway / direct throughput {gateway.requests_per_s / direct.requests_per_s:.1%}, "
        f"passthrough / direct {proxy.requests_per_s / direct.requests_per_s:.1%}, "
        f"passthrough adds {proxy.p50_ms - direct.p50_ms:+.2f} ms p50 over direct"
    )
    extra_cpu = (
        measured["gateway"].cpu_us["gateway"] - measured["passthrough"].cpu_us["passthrough"]
    )
    print(f"gateway CPU per request over the pass-through's: {extra_cpu:+.0f} us")
    # All servers share one core, so at saturation req/s ~ 1 / (CPU per request of the
    # servers in the path), and, with a fixed number of connections always waiting, the
    # mean latency is connections / req/s (Little's law). These follow from the CPU
    # figures alone, which other load on the machine disturbs far less than req/s.
    capacity = {name: 1e6 / sum(m.cpu_us.values()) for name, m in measured.items()}
    print(
        "CPU-bound view: capacity "
        + ", ".join(f"{name} {cap:.0f}" for name, cap in capacity.items())
        + f" req/s; gateway / passthrough {capacity['gateway'] / capacity['passthrough']:.1%}; "
        f"mean latency added at saturation with {connections} connections: "
        f"{connections * 1e3 * (1 / capacity['gateway'] - 1 / capacity['direct']):+.1f} ms "
        f"over direct, "
        f"{connections * 1e3 * (1 / capacity['gateway'] - 1 / capacity['passthrough']):+.1f} ms "
        "over passthrough"
    )
    return all(ok for _, _, ok in checks)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    parser.add_argument(
        "--rounds", type=int, default=1, help="measure each target this often, interleaved"
    )
    parser.add_argument("--server-cpu", type=int, default=1, help="core for every server")
    parser.add_argument("--client-cpu", type=int, default=0, help="core for wrk")
    parser.add_argument("--keep", action="store_true", help="keep the data dir and logs")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--duration, --connections and --rounds must be positive")
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
    # Turn SIGTERM into an exception so the `finally` that stops the servers runs.
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def workspace(keep: bool) -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="wayfare-bench-"))
    try:
        yield directory
    finally:
        if keep:
            print(f"data dir and logs kept in {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    with workspace(args.keep) as directory:
        fleet = Fleet(directory)
        try:
            targets, token = start_system(fleet, directory / "data", cpu=args.server_cpu)
            check_targets(targets, token)
            print("pinning (from sched_getaffinity of each process):")
            for server in fleet.servers:
                print(
                    f"  {server.name:<12} pid {server.process.pid:<7} "
                    f"cpu {affinity(server.process.pid)}  {server.url}"
                )
            print(
                f"  {'wrk':<12} -t1 -c{args.connections} cpu {args.client_cpu}  "
                f"({args.duration:g} s per run, {args.warmup:g} s warm-up, "
                f"{args.rounds} round(s))"
            )
            runs: dict[str, list[Measurement]] = {t.name: [] for t in targets}
            for round_ in range(args.rounds):
                # Interleaved, so that a slow spell of the machine hits every target alike.
                for target in targets:
                    m = measure(target, token, fleet.servers, cpu=args.client_cpu, args=args)
                    runs[target.name].append(m)
                    print(
                        f"  round {round_ + 1} {target.name:<12} {m.wrk.requests_per_s:>7.0f} "
                        f"req/s  p50 {m.wrk.p50_ms:.2f} ms  p99 {m.wrk.p99_ms:.2f} ms  "
                        + "  ".join(f"{k} {v:.0f} us/req" for k, v in m.cpu_us.items())
                        + f"  core busy {m.core_busy:.0%}"
                        + f"  others on cores {args.server_cpu}/{args.client_cpu}: "
                        + f"{m.server_core_others:.0%}/{m.client_core_others:.0%}",
                        flush=True,
                    )
            results = {name: median_measurement(rs) for name, rs in runs.items()}
            access_lines = sum(
                1
                for line in (directory / "gateway.log").read_text(errors="replace").splitlines()
                if '"event":"request"' in line
            )
            print()
            print_table(targets, results)
            print()
            met = print_ratios(results, args.connections)
            print(f"gateway access-log lines written during the run: {access_lines}")
            if any(m.wrk.non_2xx or m.wrk.socket_errors for m in results.values()):
                print("WARNING: some requests failed; see the errors column")
                met = False
            others = max(m.server_core_others for m in results.values())
            if others > 0.1:
                print(
                    f"WARNING: other processes took up to {others:.0%} of the servers' core "
                    "during a run, so req/s and latency are disturbed; the CPU per request "
                    "columns are the steadier figures. Rerun on a quiet machine or with "
                    "--rounds 3 or more."
                )
        except Exception:
            for server in fleet.servers:
                print(f"--- {server.name} log (tail)\n{_tail(server.log)}", file=sys.stderr)
            raise
        finally:
            fleet.stop()
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
