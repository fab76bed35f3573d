"""Wayfare started as a user starts it: real processes, real ports, real HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from wayfare.kit.testing.servers import free_port

__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_PASSWORD",
    "SERVICE_TOKEN",
    "RunningSystem",
    "distributed",
    "embedded",
    "wayfare",
]

ADMIN_EMAIL = "admin@wayfare.test"
ADMIN_PASSWORD = "an admin passphrase for tests"
SERVICE_TOKEN = "a service token for tests"
# The services `wayfare up` runs, in the order it gives them ports after the gateway's.
BACKENDS = ("users", "hotels", "flights", "bookings", "notifications", "audit")


@dataclass
class RunningSystem:
    url: str
    data_dir: Path
    env: dict[str, str]
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def internal(self, service: str) -> httpx.Client:
        """A client of a service's internal endpoints, with the service credential."""
        if not self.services:
            self.services = json.loads((self.data_dir / "services.json").read_text())
        return httpx.Client(
            base_url=self.services[service],
            headers={"X-Service-Token": SERVICE_TOKEN},
            timeout=30,
        )

    def logs(self) -> str:
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(self.data_dir.glob("*.log"))
        )


def _base_env(data_dir: Path, overrides: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WAYFARE_")}
    env.update(
        {
            "WAYFARE_DATA_DIR": str(data_dir),
            "WAYFARE_ADMIN_EMAIL": ADMIN_EMAIL,
            "WAYFARE_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "WAYFARE_SERVICE_TOKEN": SERVICE_TOKEN,
            "WAYFARE_LOG_LEVEL": "warning",
            # Generous defaults so tests that are not about rate limits never meet them.
            "WAYFARE_RATE_LIMIT_DEFAULT": "100000/minute",
            "WAYFARE_RATE_LIMIT_AUTH": "100000/minute",
            # Races book hundreds of trips from one account.
            "WAYFARE_MAX_PENDING_BOOKINGS": "1000",
        }
    )
    env.update(overrides)
    return env


def wayfare(*args: str, env: dict[str, str], log: Path | None = None) -> subprocess.Popen[bytes]:
    with open(log or os.devnull, "ab") as out:
        # The child keeps its own copy of the descriptor; ours closes here.
        return subprocess.Popen(
            [sys.executable, "-m", "wayfare", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _port_with_neighbours(count: int) -> int:
    """A free port whose next `count` ports are free too: `up` puts the services there."""
    for _ in range(100):
        port = free_port()
        if port + count < 65536 and all(_is_free(port + i) for i in range(1, count + 1)):
            return port
    raise RuntimeError("no run of free ports found")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def wait_ready(system: RunningSystem, url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in system.processes.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}\n{system.logs()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready within {timeout} s\n{system.logs()}")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextlib.contextmanager
def embedded(data_dir: Path, **overrides: str) -> Iterator[RunningSystem]:
    """`wayfare up`: every service in one process on SQLite."""
    port = _port_with_neighbours(len(BACKENDS))
    env = _base_env(data_dir, overrides)
    system = RunningSystem(url=f"http://127.0.0.1:{port}", data_dir=data_dir, env=env)
    data_dir.mkdir(parents=True, exist_ok=True)
    system.processes["up"] = wayfare(
        "up", "--port", str(port), "--data-dir", str(data_dir), env=env, log=data_dir / "up.log"
    )
    try:
        wait_ready(system, system.url)
        yield system
    finally:
        for proc in system.processes.values():
            stop(proc)


@contextlib.contextmanager
def distributed(
    data_dir: Path,
    *,
    database_url: str,
    redis_url: str,
    broker_url: str | None = None,
    gateways: int = 1,
    **overrides: str,
) -> Iterator[list[RunningSystem]]:
    """`wayfare serve` per service on PostgreSQL, Redis (and RabbitMQ); a system per gateway."""
    data_dir.mkdir(parents=True, exist_ok=True)
    urls = {"WAYFARE_DATABASE_URL": database_url, "WAYFARE_REDIS_URL": redis_url}
    if broker_url:
        urls["WAYFARE_BROKER_URL"] = broker_url
    ports = {name: free_port() for name in BACKENDS}
    upstreams = {name: [f"http://127.0.0.1:{port}"] for name, port in ports.items()}
    env = _base_env(data_dir, {**urls, "WAYFARE_UPSTREAMS": json.dumps(upstreams), **overrides})
    for command in ("migrate", "seed"):
        subprocess.run(
            [sys.executable, "-m", "wayfare", command], env=env, check=True, capture_output=True
        )
    processes: dict[str, subprocess.Popen[bytes]] = {}
    systems: list[RunningSystem] = []
    try:
        for name, port in ports.items():
            processes[name] = wayfare(
                "serve", name, "--port", str(port), env=env, log=data_dir / f"{name}.log"
            )
        for name in BACKENDS:
            probe = RunningSystem(
                url=upstreams[name][0], data_dir=data_dir, env=env, processes=processes
            )
            wait_ready(probe, probe.url)
        for index in range(gateways):
            port = free_port()
            processes[f"gateway{index}"] = wayfare(
                "serve",
                "gateway",
                "--port",
                str(port),
                env=env,
                log=data_dir / f"gateway{index}.log",
            )
            system = RunningSystem(
                url=f"http://127.0.0.1:{port}",
                data_dir=data_dir,
                env=env,
                processes=processes,
                services={name: urls[0] for name, urls in upstreams.items()},
            )
            wait_ready(system, system.url)
            systems.append(system)
        yield systems
    finally:
        for proc in processes.values():
            stop(proc, signal.SIGTERM)
