"""Structured JSON logs (structlog) and the request context every log line carries."""

from __future__ import annotations

import logging
import re
import secrets
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import orjson
import structlog

__all__ = [
    "configure_logging",
    "current_traceparent",
    "get_logger",
    "new_request_id",
    "new_traceparent",
    "request_id_var",
    "traceparent_var",
    "valid_request_id",
    "valid_traceparent",
]

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
traceparent_var: ContextVar[str | None] = ContextVar("traceparent", default=None)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")


def new_request_id() -> str:
    return secrets.token_hex(16)


def valid_request_id(value: str | None) -> bool:
    """Client-supplied ids are echoed and logged, so only a safe alphabet is kept."""
    return value is not None and _REQUEST_ID.match(value) is not None


def valid_traceparent(value: str | None) -> bool:
    if value is None:
        return False
    match = _TRACEPARENT.match(value)
    return match is not None and set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}


def new_traceparent(parent: str | None = None) -> str:
    """W3C trace context: keep the caller's trace id, start a new span id."""
    if parent and valid_traceparent(parent):
        trace_id = parent[3:35]
        flags = parent[-2:]
    else:
        trace_id, flags = secrets.token_hex(16), "01"
    return f"00-{trace_id}-{secrets.token_hex(8)}-{flags}"


def current_traceparent() -> str | None:
    return traceparent_var.get()


def _add_request_context(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    request_id = request_id_var.get()
    if request_id is not None:
        event.setdefault("request_id", request_id)
    return event


def _orjson_dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """Idempotent; every process calls it once at start."""
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_request_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    # Stays lazy: loggers made at import pick up the configuration made later at start.
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(logger_name=name)
    return logger
