"""The one settings object: every knob staybook has, read from `STAYBOOK_*` variables.

Defaults are the embedded demo (SQLite file, in-process bus, in-memory cache,
in-process search index). Production points the URLs at real servers.
Context-specific knobs live in nested sections (`STAYBOOK_BOOKING__HOLD_TTL_SECONDS`).
"""

from __future__ import annotations

import os
import socket
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A development-only key. `staybook check` refuses it outside the demo.
DEMO_SECRET = "staybook-demo-secret-change-me-0123456789abcdef"


class IdentitySettings(BaseModel):
    access_token_ttl_seconds: int = Field(900, ge=30, le=86_400)
    refresh_token_ttl_seconds: int = Field(30 * 86_400, ge=300)
    password_min_length: int = Field(10, ge=8, le=128)
    # Master key (urlsafe base64, 32 bytes) that wraps the data keys of PII envelope encryption.
    pii_master_key: SecretStr | None = None
    # Older master keys that still unwrap data keys during a rotation, by key id.
    pii_previous_master_keys: dict[str, SecretStr] = Field(default_factory=dict)


class GatewaySettings(BaseModel):
    max_body_bytes: int = Field(8 * 1024, ge=1024)
    # Routes (regular expressions over the path) that may receive larger bodies, with their limit.
    large_body_routes: dict[str, int] = Field(
        default_factory=lambda: {r"^/api/v1/properties/[^/]+/photos$": 15 * 1024 * 1024}
    )
    rate_limit_requests: int = Field(2000, ge=1)
    rate_limit_window_seconds: int = Field(300, ge=1)
    rate_limit_block_seconds: int = Field(600, ge=0)
    cors_origins: list[str] = Field(default_factory=list)
    # Addresses of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: list[str] = Field(default_factory=list)


class CatalogSettings(BaseModel):
    media_dir: Path = Path("./staybook-media")
    media_base_url: str = "/media"
    max_photo_bytes: int = Field(15 * 1024 * 1024, ge=1024)
    # An S3-compatible store for photos; the local media directory when unset.
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None


class InventorySettings(BaseModel):
    horizon_days: int = Field(365, ge=30, le=1100)
    max_stay_nights: int = Field(30, ge=1, le=365)
    availability_cache_seconds: int = Field(30, ge=0)


class BookingSettings(BaseModel):
    hold_ttl_seconds: int = Field(600, ge=10)
    expiry_batch_size: int = Field(500, ge=1)
    idempotency_ttl_seconds: int = Field(86_400, ge=60)
    # A saga step older than this is taken as abandoned (its process crashed) and recovered.
    recovery_grace_seconds: float = Field(60, ge=0)
    recovery_batch_size: int = Field(100, ge=1)


class PaymentsSettings(BaseModel):
    provider: str = "sandbox"
    webhook_secret: SecretStr = SecretStr(DEMO_SECRET)
    webhook_tolerance_seconds: int = Field(300, ge=1)
    # How long staybook waits for the provider before treating the outcome as unknown.
    provider_timeout_seconds: float = Field(10, gt=0)
    # The sandbox's simulated network round trip; `sandbox_instant` (benchmarks) skips it and its webhooks.
    sandbox_latency_ms: int = Field(40, ge=0)
    sandbox_instant: bool = False
    # Where the sandbox posts its webhooks; default this process's own /api/v1/payments/webhooks/sandbox.
    sandbox_webhook_url: str | None = None


class SearchSettings(BaseModel):
    backend: Literal["memory", "typesense"] = "memory"
    cache_seconds: int = Field(10, ge=0)


class NotificationSettings(BaseModel):
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    from_address: str = "staybook <no-reply@staybook.localhost>"
    max_attempts: int = Field(5, ge=1, le=50)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STAYBOOK_",
        env_nested_delimiter="__",
        env_file=None,
        extra="ignore",
        validate_default=True,
    )

    environment: Literal["demo", "development", "production", "test"] = "demo"
    service_name: str = "staybook"
    pod: str = Field(default_factory=lambda: os.environ.get("POD_NAME") or socket.gethostname())
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True

    database_url: str = "sqlite+aiosqlite:///./staybook.db"
    database_pool_size: int = Field(10, ge=1, le=200)
    database_max_overflow: int = Field(10, ge=0, le=200)
    database_echo: bool = False
    redis_url: str | None = None
    # Prefix of every Redis key staybook writes (several deployments or test runs can share one Redis).
    redis_key_prefix: str = Field("staybook:", pattern=r"^[A-Za-z0-9_:.-]{1,40}$")
    nats_url: str | None = None
    # Prefix of NATS subjects and streams; separate deployments (or test runs) on one NATS use their own.
    bus_namespace: str = Field("staybook", pattern=r"^[a-z][a-z0-9_-]{0,30}$")
    typesense_url: str | None = None
    typesense_api_key: SecretStr = SecretStr("staybook-typesense")

    secret_key: SecretStr = SecretStr(DEMO_SECRET)
    # JWT signing keys by key id; the active one signs, all of them verify.
    jwt_keys: dict[str, SecretStr] = Field(default_factory=dict)
    jwt_active_key_id: str = "k1"
    jwt_issuer: str = "staybook"
    jwt_audience: str = "staybook-api"

    otlp_endpoint: str | None = None

    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    # Run the relay, consumers and periodic jobs inside the API process (the demo does).
    run_worker_in_process: bool = False

    outbox_batch_size: int = Field(500, ge=1, le=10_000)
    outbox_poll_seconds: float = Field(0.1, gt=0, le=60)
    outbox_retention_hours: int = Field(72, ge=1)
    consumer_max_deliver: int = Field(5, ge=1, le=100)
    consumer_backoff_seconds: float = Field(0.5, ge=0)

    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    inventory: InventorySettings = Field(default_factory=InventorySettings)
    booking: BookingSettings = Field(default_factory=BookingSettings)
    payments: PaymentsSettings = Field(default_factory=PaymentsSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        """Accept the URLs operators write (postgresql://, sqlite:///) and pick the async driver."""
        for plain, driver in (
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgresql+psycopg://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        if not url.startswith(("postgresql+asyncpg://", "sqlite+aiosqlite://")):
            raise ValueError("database_url must be a postgresql:// or sqlite:/// URL")
        return url

    @model_validator(mode="after")
    def _default_jwt_key(self) -> Settings:
        if not self.jwt_keys:
            self.jwt_keys = {self.jwt_active_key_id: self.secret_key}
        if self.jwt_active_key_id not in self.jwt_keys:
            raise ValueError(f"jwt_active_key_id {self.jwt_active_key_id!r} is not one of jwt_keys")
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @cached_property
    def sync_database_url(self) -> str:
        """The same database for synchronous tools (Alembic offline, psql-like checks)."""
        return self.database_url.replace("+asyncpg", "+psycopg").replace("+aiosqlite", "")

    def uses_demo_secrets(self) -> bool:
        secrets = [self.secret_key, *self.jwt_keys.values(), self.payments.webhook_secret]
        return any(s.get_secret_value() == DEMO_SECRET for s in secrets)

    def masked(self) -> dict[str, Any]:
        """The effective configuration with secrets and URL passwords masked, for `staybook check`."""
        return _mask(self.model_dump(mode="json"))


def _mask(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v, key) for v in value]
    if isinstance(value, str):
        lowered = key.lower()
        if any(word in lowered for word in ("secret", "password", "key", "token")) and value:
            return "********"
        if "://" in value and "@" in value:
            scheme, rest = value.split("://", 1)
            credentials, host = rest.rsplit("@", 1)
            user = credentials.split(":", 1)[0]
            return f"{scheme}://{user}:********@{host}"
    return value


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)
