"""Throwaway PostgreSQL, Redis and RabbitMQ servers from the Debian binaries.

Each runs in its own temporary directory on a free loopback port and is removed on
exit, so tests and benchmarks talk to real servers without touching the machine's own.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PostgresServer",
    "RabbitMQServer",
    "RedisServer",
    "ServerUnavailable",
    "free_port",
    "postgres_server",
    "rabbitmq_server",
    "redis_server",
]

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class ServerUnavailable(RuntimeError):
    """The server's binary is not installed on this machine."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on port {port} within {timeout} s")


def _owned_tempdir(prefix: str, user: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _as_user(user: str) -> list[str]:
    """Prefix a command so it runs as `user` when we are root (the servers refuse root)."""
    return ["runuser", "-u", user, "--"] if os.geteuid() == 0 else []


@dataclass(frozen=True)
class PostgresServer:
    port: int
    data_dir: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_user("postgres"), str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast", "-w")

    def start(self) -> None:
        self._ctl(
            "start",
            "-w",
            "-l",
            str(self.data_dir / "server.log"),
            "-o",
            f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=300",
        )

    def create_database(self, name: str) -> str:
        subprocess.run(
            [
                *_as_user("postgres"),
                str(PG_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-qc",
                f'CREATE DATABASE "{name}"',
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return self.url(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    if not (PG_BIN / "initdb").exists():
        raise ServerUnavailable(f"PostgreSQL 15 binaries not found in {PG_BIN}")
    root = _owned_tempdir("wayfare-pg-", "postgres")
    data = root / "data"
    try:
        subprocess.run(
            [
                *_as_user("postgres"),
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        server = PostgresServer(port=free_port(), data_dir=data)
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(subprocess.CalledProcessError):
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class RedisServer:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def start(self) -> None:
        self.process = _spawn_redis(self.port)


def _spawn_redis(port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for_port(port, 10, proc)
    return proc


@contextlib.contextmanager
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        raise ServerUnavailable("redis-server not found on PATH")
    port = free_port()
    server = RedisServer(port=port, process=_spawn_redis(port))
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class RabbitMQServer:
    port: int
    node: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    def ctl(self, *args: str) -> str:
        out = subprocess.run(
            ["rabbitmqctl", "-n", self.node, *args],
            check=True,
            capture_output=True,
            env=self.env,
            timeout=120,
        )
        return out.stdout.decode()

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.ctl("await_startup")


@contextlib.contextmanager
def rabbitmq_server() -> Iterator[RabbitMQServer]:
    if shutil.which("rabbitmq-server") is None:
        raise ServerUnavailable("rabbitmq-server not found on PATH")
    root = _owned_tempdir("wayfare-rabbit-", "rabbitmq")
    port, dist_port = free_port(), free_port()
    node = f"wayfare{port}@localhost"
    env = {
        **os.environ,
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(root / "log"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        "RABBITMQ_SERVER_START_ARGS": "-eval 'error_logger:tty(false).'",
    }
    (root / "enabled_plugins").write_text("[].\n")
    for sub in ("mnesia", "log"):
        (root / sub).mkdir()
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(root)], check=True)
    proc = subprocess.Popen(
        ["rabbitmq-server"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = RabbitMQServer(port=port, node=node, env=env)
    try:
        _wait_for_port(port, 60, proc)
        server.ctl("await_startup")
        yield server
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            server.ctl("shutdown")
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        shutil.rmtree(root, ignore_errors=True)
