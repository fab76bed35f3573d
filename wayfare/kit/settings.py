"""Typed settings read from `WAYFARE_*` environment variables.

One object carries everything a process needs; it is built once at start and passed
in, never imported as a global. Per-service overrides of the connection URLs use the
service's name as an infix, e.g. `WAYFARE_USERS_DATABASE_URL`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="WAYFARE_", extra="ignore")

    data_dir: Path = Field(Path(".wayfare"), description="where embedded mode keeps its files")
    database_url: str | None = Field(
        None, description="PostgreSQL URL; unset means one SQLite file per service"
    )
    redis_url: str | None = Field(None, description="Redis URL for rate limits; unset = memory")
    broker_url: str | None = Field(None, description="RabbitMQ URL; unset = in-process bus")

    db_pool_size: int = Field(10, ge=1, description="connections kept open per service")
    db_max_overflow: int = Field(10, ge=0, description="extra connections allowed at peak")
    db_pool_recycle: int = Field(1800, ge=1, description="seconds before a connection is renewed")
    db_pool_pre_ping: bool = Field(True, description="test a pooled connection before use")
    sqlite_busy_timeout_ms: int = Field(5000, ge=0, description="SQLite busy timeout")

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["json", "console"] = "json"
    max_body_bytes: int = Field(1_048_576, ge=1, description="largest request body accepted")

    issuer: str = Field("wayfare", description="`iss` of the tokens the users service signs")
    audience: str = Field("wayfare", description="`aud` of the tokens")
    access_token_ttl: int = Field(900, ge=1, description="access token lifetime, seconds")
    refresh_token_ttl: int = Field(2_592_000, ge=1, description="refresh token lifetime, seconds")
    admin_email: str = Field("admin@wayfare.local", description="the admin account made at start")
    admin_password: SecretStr | None = Field(
        None, description="unset in embedded mode: one is generated and printed once"
    )

    upstreams: dict[str, list[str]] = Field(
        default_factory=dict,
        description='gateway: service name to base URLs, JSON, e.g. {"users": ["http://h:8001"]}',
    )
    jwks_url: str | None = Field(None, description="JWKS to verify tokens with (default: users)")
    jwks_cache_ttl: float = Field(300.0, gt=0, description="seconds a fetched JWKS is trusted")
    jwks_min_refetch_interval: float = Field(
        5.0, ge=0, description="least seconds between JWKS fetches caused by unknown kids"
    )
    upstream_connect_timeout: float = Field(2.0, gt=0, description="gateway connect timeout")
    upstream_timeout: float = Field(10.0, gt=0, description="gateway total upstream timeout")
    rate_limit_default: str = Field("300/minute", description="per user, or per client address")
    rate_limit_auth: str = Field("20/minute", description="login and register, per address")
    trust_forwarded_for: bool = Field(
        False, description="take the client address from X-Forwarded-For (behind a proxy)"
    )

    service_token: SecretStr | None = Field(
        None, description="shared secret of internal endpoints; generated per run embedded"
    )
    hold_ttl: int = Field(900, ge=1, description="seconds a hotel or flight hold lives unconfirmed")
    booking_wait: float = Field(
        5.0, ge=0, description="seconds POST /bookings waits for the saga before answering 202"
    )
    max_pending_bookings: int = Field(
        5, ge=1, description="pending bookings one traveller may have"
    )
    saga_lease: float = Field(
        10.0, gt=0, description="seconds a bookings replica owns a saga without renewing"
    )
    cache_enabled: bool = Field(True, description="cache overviews, profiles and searches")
    overview_timeout: float = Field(
        1.0, gt=0, description="seconds each part of the overview may take"
    )
    audit_batch_size: int = Field(500, ge=1, description="audit: events written per batch")
    audit_batch_wait: float = Field(0.2, gt=0, description="audit: seconds a batch may wait")

    def service_database_url(self, service: str) -> str:
        """The service's own database: an override, the shared server, or a SQLite file."""
        override = os.environ.get(f"WAYFARE_{service.upper()}_DATABASE_URL")
        if override:
            return override
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / f'{service}.db').resolve()}"

    @property
    def embedded(self) -> bool:
        return self.database_url is None
