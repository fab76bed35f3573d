"""Summaries of a profile of `wayfare up` taken by bench/bookings.py: where the time goes.

Both group time by the package of the code that spent it (its own time, not its callees'),
so a layer's share reads directly: SQLAlchemy, aiosqlite and SQLite, the event loop, the
HTTP servers and clients, pydantic, JSON, logging, token checks, Wayfare's own code.
"""

from __future__ import annotations

import cProfile
import pstats
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["category", "run_profiled", "summarize_cprofile", "summarize_pyspy"]

# (category, substrings of a file path or frame name), first match wins.
_CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sqlite (C library)", ("sqlite3.Cursor", "sqlite3.Connection", "_sqlite3")),
    ("aiosqlite (thread handoff)", ("aiosqlite/",)),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("asyncpg", ("asyncpg/",)),
    ("json (orjson / json)", ("orjson", "json/", "'dumps'", "'loads'")),
    ("pydantic", ("pydantic/", "pydantic_core")),
    ("fastapi / starlette", ("fastapi/", "starlette/")),
    ("uvicorn / httptools (server)", ("uvicorn/", "httptools")),
    ("aiohttp (client)", ("aiohttp/", "multidict/", "yarl/")),
    ("jwt / crypto", ("jwt/", "cryptography/")),
    ("logging (structlog)", ("structlog/", "logging/")),
    ("prometheus", ("prometheus_client/",)),
    ("limits (rate limit)", ("limits/",)),
    ("asyncio / uvloop (event loop)", ("asyncio/", "uvloop", "selectors", "select.epoll")),
    ("wayfare", ("wayfare/",)),
    ("threading / queue", ("threading.py", "queue.py", "_thread")),
)


def category(where: str) -> str:
    for name, markers in _CATEGORIES:
        if any(marker in where for marker in markers):
            return name
    return "other"


def _table(title: str, counts: Iterable[tuple[str, float]], total: float, unit: str) -> str:
    lines = [title]
    for name, value in counts:
        lines.append(f"    {value / total:>6.1%} {value:>10.2f} {unit}  {name}")
    return "\n".join(lines)


# Calls counted per booking: (label, file substring, function name). Only plain functions:
# cProfile counts every resumption of a coroutine as a call.
_COUNTED = (
    ("HTTP requests served (all services)", "uvicorn/protocols/http/", "on_message_complete"),
    ("HTTP requests sent (aiohttp)", "aiohttp/client_reqrep.py", "update_headers"),
    ("database transactions committed", "sqlalchemy/engine/default.py", "do_commit"),
    ("  of them through a UnitOfWork session", "sqlalchemy/orm/session.py", "_prepare_impl"),
    ("rollbacks (the pool's reset on return)", "sqlalchemy/engine/default.py", "do_rollback"),
    ("connection pre-pings", "sqlalchemy/engine/default.py", "do_ping"),
    ("SQL statements", "sqlalchemy/engine/base.py", "_execute_context"),
    ("round trips to aiosqlite's threads", "~", "<method 'put_nowait' of '_queue.SimpleQueue'"),
    ("events serialised (outbox)", "wayfare/kit/bus/envelope.py", "to_json"),
    ("JSON documents parsed (orjson)", "~", "<orjson.loads>"),
    ("JWT signatures checked", "jwt/api_jws.py", "_verify_signature"),
)


def summarize_cprofile(path: Path, top: int = 25, bookings: int = 0) -> str:
    """Own time by category and the top functions, from `run_profiled` output.

    cProfile sees the main thread only: statements that aiosqlite runs in its threads
    are not in it (py-spy sees them). Times are the main thread's CPU seconds.
    """
    if not path.exists():
        return f"  (no cProfile output at {path})"
    stats = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], Any] = stats.stats  # type: ignore[attr-defined]
    by_category: dict[str, float] = {}
    own: list[tuple[float, float, int, str]] = []

    def charge(kind: str, seconds: float) -> None:
        by_category[kind] = by_category.get(kind, 0.0) + seconds

    for (file, line, name), (_cc, calls, tottime, cumtime, callers) in raw.items():
        own.append((tottime, cumtime, calls, f"{file}:{line}({name})"))
        if file == "~" and callers:
            # A builtin (dict.get, isinstance, greenlet's switch...) is charged to the
            # packages that called it, by the time spent on behalf of each.
            for (caller_file, _line, caller_name), caller_stat in callers.items():
                charge(category(f"{caller_file} {caller_name}"), caller_stat[2])
        else:
            charge(category(f"{file} {name}"), tottime)
    total = sum(by_category.values()) or 1.0
    own.sort(reverse=True)
    lines = [
        f"\n== cProfile of `wayfare up` (main thread CPU), {total:.1f} s of own time: {path}",
        _table(
            "  own time by package (a builtin's charged to its callers'):",
            sorted(by_category.items(), key=lambda kv: -kv[1]),
            total,
            "s",
        ),
        f"  top {top} functions by own time (own s, cumulative s, calls):",
    ]
    for tottime, cumtime, calls, where in own[:top]:
        lines.append(f"    {tottime:>7.2f} {cumtime:>8.2f} {calls:>9}  {_short(where)}")
    if bookings:
        lines.append(f"  calls per booking ({bookings} bookings in the profile):")
        for label, file_part, function in _COUNTED:
            calls = max(
                (
                    stat[1]
                    for (file, _line, name), stat in raw.items()
                    if name.startswith(function) and file_part in file
                ),
                default=0,
            )
            lines.append(f"    {calls / bookings:>7.1f}  {label}")
        lines.append(f"  main thread CPU per booking, profiled: {total / bookings * 1e3:.1f} ms")
    return "\n".join(lines)


_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def summarize_pyspy(path: Path, top: int = 25) -> str:
    """Samples by thread kind, own samples by category and the top leaf frames (py-spy raw).

    py-spy tells idle threads apart by their state when sampled: a thread blocked on
    aiosqlite's queue can pass for busy, so the share of the aiosqlite threads reads high.
    The CPU split the bench takes from /proc (main thread against the rest) is exact.
    """
    if not path.exists():
        return f"  (no py-spy output at {path}; see {path.with_suffix('.log')})"
    by_thread: Counter[str] = Counter()
    by_category: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "main thread" if "MainThread" in frames[0] else "other threads"
        if any("aiosqlite" in frame for frame in frames):
            thread = "aiosqlite threads"
        frames = [f for f in frames if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        total += count
        by_thread[thread] += count
        leaf = frames[-1]
        match = _FRAME.match(leaf)
        file = match.group("file") if match else leaf
        by_category[category(f"{file} {leaf}")] += count
        leaves[_short(leaf)] += count
        for marker in _MARKERS:
            if any(marker in frame for frame in frames):
                inclusive[marker] += count
    if not total:
        return f"  (py-spy recorded nothing at {path})"
    lines = [
        f"\n== py-spy of `wayfare up` (all threads, on-CPU samples): {total} samples, {path}",
        _table("  samples by thread:", by_thread.most_common(), total, "samples"),
        _table("  own samples by package:", by_category.most_common(), total, "samples"),
        _table(
            "  inclusive samples of frames containing:",
            inclusive.most_common(),
            total,
            "samples",
        ),
        f"  top {top} leaf frames:",
    ]
    for frame, count in leaves.most_common(top):
        lines.append(f"    {count / total:>6.1%} {count:>7}  {frame}")
    return "\n".join(lines)


# Frames worth an inclusive figure: what a saga step and a request go through.
_MARKERS = (
    "commit (sqlalchemy",
    "execute (sqlalchemy/ext/asyncio",
    "_drive (wayfare/kit/saga.py",
    "_renew (wayfare/kit/saga.py",
    "wait (wayfare/kit/saga.py",
    "post (wayfare/services/bookings/inventory.py",
    "hold_room (wayfare/services/hotels",
    "hold_seats (wayfare/services/flights",
    "verify (wayfare/kit/auth/tokens.py",
    "_publish_batch (wayfare/kit/outbox.py",
    "timeline (wayfare/services/bookings",
    "gateway",
    "notifications",
    "audit",
    "run_endpoint_function (fastapi",
    "serialize_response (fastapi",
    "solve_dependencies (fastapi",
    "structlog",
)


def _short(where: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in where:
            head, _, tail = where.partition(marker)
            where = head[: head.rfind("(") + 1] + tail if "(" in head else tail
    return where


def run_profiled(output: Path, argv: list[str]) -> None:
    """Run the `wayfare` command line, profiling between SIGUSR1 and SIGUSR2 with cProfile.

    It times the main thread's CPU rather than wall time: on a shared machine, other
    processes' work would otherwise be charged to whatever was running when they ran.
    """
    from wayfare.cli import app

    profiler = cProfile.Profile(time.thread_time)
    sys.argv = ["wayfare", *argv]
    # SIGUSR1 starts recording and SIGUSR2 stops it, so the profile covers one level.
    signal.signal(signal.SIGUSR1, lambda _signum, _frame: profiler.enable())
    signal.signal(signal.SIGUSR2, lambda _signum, _frame: profiler.disable())
    try:
        app()
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(str(output))


if __name__ == "__main__":
    # python -m bench.bookings_profile OUTPUT WAYFARE-ARGS...
    run_profiled(Path(sys.argv[1]), sys.argv[2:])
