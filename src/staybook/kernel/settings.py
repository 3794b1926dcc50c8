"""The one settings object: every knob staybook has, read from `STAYBOOK_*` variables.

Defaults are the embedded demo (SQLite file, in-process bus, in-memory cache,
in-process search index). Production points the URLs at real servers.
Context-specific knobs live in nested sections (`STAYBOOK_BOOKING__HOLD_TTL_SECONDS`).
"""

from __future__ import annotations

import os
import socket
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# A development-only key. `staybook check` refuses it outside the demo.
DEMO_SECRET = "staybook-demo-secret-change-me-0123456789abcdef"


class IdentitySettings(BaseModel):
    access_token_ttl_seconds: int = Field(900, ge=30, le=86_400)
    # How long an API process trusts the token version it read (Redis, or the database without it)
    # before reading it again. Identity's revocation event updates every process sooner; this bounds
    # how late a process that missed the event can be.
    token_version_cache_seconds: float = Field(2.0, ge=0, le=60)
    refresh_token_ttl_seconds: int = Field(30 * 86_400, ge=300)
    password_min_length: int = Field(10, ge=8, le=128)
    # Master key (urlsafe base64, 32 bytes) that wraps the data keys of PII envelope encryption.
    pii_master_key: SecretStr | None = None
    # Older master keys that still unwrap data keys during a rotation, by key id.
    pii_previous_master_keys: dict[str, SecretStr] = Field(default_factory=dict)
    # Id of `pii_master_key`, stored beside every wrapped data key so rotation knows what to re-wrap.
    pii_master_key_id: str = Field("m1", pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    # Key of the keyed hash (HMAC) that finds users by email without storing or scanning plaintext.
    email_hash_key: SecretStr | None = None
    # argon2id cost (OWASP 2023 minimum: 19 MiB, 2 passes, 1 lane). Raising them rehashes on next login.
    argon2_time_cost: int = Field(2, ge=1, le=20)
    argon2_memory_kib: int = Field(19_456, ge=1024, le=1_048_576)
    argon2_parallelism: int = Field(1, ge=1, le=16)
    mfa_token_ttl_seconds: int = Field(300, ge=30, le=3600)
    recovery_code_count: int = Field(10, ge=4, le=20)
    # Residency regions a user may live in; a region listed in `regions` (top level) stores its
    # users' personal data in a database of its own.
    regions: list[str] = Field(default_factory=lambda: ["eu", "us", "apac"])
    default_region: str = "eu"
    # Tighter limits than the gateway's on the routes that guess credentials: (requests, window s, block s).
    login_per_ip: tuple[int, int, int] = (30, 300, 900)
    login_per_account: tuple[int, int, int] = (10, 900, 900)
    register_per_ip: tuple[int, int, int] = (10, 3600, 3600)
    mfa_verify_per_account: tuple[int, int, int] = (10, 300, 900)
    # Key of the HMAC that signs the audit chain's published head (default: derived from
    # secret_key). The database never holds it, so whoever can rewrite the database cannot forge a head.
    audit_anchor_key: SecretStr | None = None
    # Append-only file the signed heads are written to: put it where the database user cannot write
    # (another volume, a write-once bucket mount). Each head also goes out as `audit.anchored`.
    # Default: beside the SQLite database file, else ./staybook-audit-anchors.jsonl.
    audit_anchor_file: Path | None = None
    audit_anchor_interval_seconds: float = Field(60, ge=1, le=86_400)


class GatewaySettings(BaseModel):
    max_body_bytes: int = Field(8 * 1024, ge=1024)
    # Routes (regular expressions over the path) that may receive larger bodies, with their limit.
    large_body_routes: dict[str, int] = Field(
        default_factory=lambda: {
            r"^/api/v1/properties/[^/]+/photos$": 15 * 1024 * 1024,
            r"^/api/v1/room-types/[^/]+/calendar/import$": 1024 * 1024,
            r"^/host/properties/[^/]+/photos$": 15 * 1024 * 1024,
            r"^/host/room-types/[^/]+/calendar/import$": 1024 * 1024,
            # 500 signals of at most 8 KB each (docs/personalization.md).
            r"^/api/v1/signals$": 4 * 1024 * 1024,
        }
    )
    rate_limit_requests: int = Field(2000, ge=1)
    rate_limit_window_seconds: int = Field(300, ge=1)
    rate_limit_block_seconds: int = Field(600, ge=0)
    cors_origins: list[str] = Field(default_factory=list)
    # Addresses of reverse proxies whose X-Forwarded-For is believed.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Paths the per-IP limit leaves alone: the probes. /metrics is limited like any route (a scrape every
    # 15 s is far below the limit), so guessing its token costs what guessing a password does.
    rate_limit_exempt_paths: list[str] = Field(default_factory=lambda: ["/healthz/live", "/healthz/ready"])
    security_headers: bool = True
    hsts_seconds: int = Field(63_072_000, ge=0)
    content_security_policy: str = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; "
        "base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
    )


class MetricsSettings(BaseModel):
    # The bearer token Prometheus sends to GET /metrics (`authorization: credentials_file:` in its
    # scrape config). Unset, /metrics is open in the demo and development and refused in production.
    token: SecretStr | None = None


class CatalogSettings(BaseModel):
    media_dir: Path = Path("./staybook-media")
    # GET /properties/{id} answers from the cache this long (0: every read goes to the database);
    # every change of the property or its room types makes the cached answer stale at once.
    property_cache_seconds: int = Field(300, ge=0, le=86_400)
    # Where variant URLs point: the API serves the local media directory here; a CDN URL in production.
    media_base_url: str = "/api/v1/media"
    max_photo_bytes: int = Field(15 * 1024 * 1024, ge=1024)
    # An S3-compatible bucket for photos (AWS S3, MinIO, Ceph, R2...) when s3_bucket is set; the local
    # media directory otherwise. Needs the `s3` extra (boto3). Credentials left unset come from
    # boto3's usual chain (AWS_* environment variables, instance or pod role).
    s3_bucket: str | None = None
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "path"
    # Variant URLs: under this public base (a CDN or a public-read bucket) when set; otherwise under
    # media_base_url, where the API answers with a redirect to a presigned URL valid this long.
    s3_public_base_url: str | None = None
    s3_presign_seconds: int = Field(3600, ge=60, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> CatalogSettings:
        if self.s3_bucket is None and (self.s3_endpoint_url or self.s3_public_base_url):
            raise ValueError("catalog.s3_endpoint_url and s3_public_base_url need catalog.s3_bucket")
        return self


class InventorySettings(BaseModel):
    horizon_days: int = Field(365, ge=30, le=1100)
    max_stay_nights: int = Field(30, ge=1, le=365)
    availability_cache_seconds: int = Field(30, ge=0)
    # Connections that open calendars at once when seeding PostgreSQL (each runs INSERT ... SELECT).
    seed_connections: int = Field(2, ge=1, le=32)


class BookingSettings(BaseModel):
    hold_ttl_seconds: int = Field(600, ge=10)
    expiry_batch_size: int = Field(500, ge=1)
    idempotency_ttl_seconds: int = Field(86_400, ge=60)
    # A saga step older than this is taken as abandoned (its process crashed) and recovered.
    recovery_grace_seconds: float = Field(60, ge=0)
    recovery_batch_size: int = Field(100, ge=1)


class PaymentsSettings(BaseModel):
    # The provider module (payments/<name>.py); its webhooks arrive at /api/v1/payments/webhooks/<name>.
    provider: Literal["sandbox", "stripe"] = "sandbox"
    # The secret the provider signs webhooks with (Stripe: the endpoint's `whsec_...` signing secret).
    webhook_secret: SecretStr = SecretStr(DEMO_SECRET)
    webhook_tolerance_seconds: int = Field(300, ge=1)
    # How long staybook waits for the provider before treating the outcome as unknown.
    provider_timeout_seconds: float = Field(10, gt=0)
    # The circuit breaker on new payments: after this many provider failures or timeouts in a row
    # (per process), payments fail fast for `breaker_open_seconds` without calling the provider.
    breaker_failures: int = Field(5, ge=1)
    breaker_open_seconds: float = Field(10, gt=0)
    # The sandbox's simulated network round trip; `sandbox_instant` (benchmarks) skips it and its webhooks.
    sandbox_latency_ms: int = Field(40, ge=0)
    sandbox_instant: bool = False
    # Where the sandbox posts its webhooks; default this process's own /api/v1/payments/webhooks/sandbox.
    sandbox_webhook_url: str | None = None
    # The stripe provider: a secret key (`sk_...`) and the API's address (another for a Stripe-compatible server).
    stripe_api_key: SecretStr | None = None
    stripe_api_base: str = "https://api.stripe.com"
    # Webhook deliveries accepted per provider and source address per window (forgeries and floods
    # are refused before the body is read or a signature checked).
    # A provider sends every booking's webhooks from a few addresses: 600/min refused (429) the
    # deliveries of 10 bookings/s, so the bound is set far above the platform's 5,000 bookings/min.
    webhook_rate_limit_requests: int = Field(60_000, ge=1)
    webhook_rate_limit_window_seconds: int = Field(60, ge=1)


class SearchSettings(BaseModel):
    backend: Literal["memory", "typesense"] = "memory"
    # Short: a sold-out night must leave results within about a second of the booking.
    cache_seconds: float = Field(1.0, ge=0)
    # Units of each currency per 1 EUR as decimal strings; empty = the built-in reference table.
    rates: dict[str, str] = Field(default_factory=dict)
    default_currency: str = "EUR"
    # Collection alias in Typesense (prefixed with bus_namespace so deployments can share a server).
    typesense_collection: str = Field("properties", pattern=r"^[a-z][a-z0-9_]{0,40}$")


class WebSettings(BaseModel):
    # Map tiles as a Leaflet URL template ("https://tile.example.org/{z}/{x}/{y}.png"); unset: the maps
    # show their markers on a plain background, with no request leaving the site (the offline demo).
    tile_url: str | None = Field(None, max_length=300, pattern=r"^https?://[^\s'\"]+$")
    tile_attribution: str = Field("", max_length=300)
    # Session cookies are Secure unless this is false; only the plain-http localhost demo turns it off.
    secure_cookies: bool | None = Field(None, description="Default: on, except in the demo environment")
    # Sandbox payment tokens are shown on the checkout page (the demo and tests only).
    show_test_tokens: bool | None = Field(None, description="Default: on in the demo environment")
    results_per_page: int = Field(12, ge=1, le=50)


class NotificationSettings(BaseModel):
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    from_address: str = "staybook <no-reply@staybook.localhost>"
    smtp_timeout_seconds: float = Field(30, gt=0, le=300)
    max_attempts: int = Field(5, ge=1, le=50)
    # Without smtp_host (the demo) mail is written as .eml files here instead of sent.
    mail_sink_dir: Path = Path("./staybook-mail")
    # SMS and push go through one provider: the sandbox records them, the webhook posts them over HTTP.
    provider: Literal["sandbox", "webhook"] = "sandbox"
    provider_webhook_url: str | None = None
    provider_webhook_token: SecretStr | None = None
    # Absolute base of links in messages (unsubscribe); the public address of the API. Unset, it is
    # the address the API listens on (http_host:http_port), so a demo on another port links to it.
    public_base_url: str | None = None
    # SMS waits out these local hours of the recipient (start > end spans midnight).
    quiet_hours_start: int = Field(22, ge=0, le=23)
    quiet_hours_end: int = Field(8, ge=0, le=23)
    retry_base_seconds: float = Field(30, ge=0)
    retry_max_seconds: float = Field(3600, ge=0)
    batch_size: int = Field(50, ge=1, le=1000)
    concurrency: int = Field(8, ge=1, le=100)
    poll_seconds: float = Field(2.0, gt=0, le=60)
    # A worker that claimed a delivery and died gives it back after this lease.
    claim_seconds: float = Field(300, gt=0)


class BackupSettings(BaseModel):
    """pgBackRest, driven by `staybook backup|restore` on the database host (docs/operations/recovery.md)."""

    stanza: str = Field("staybook", pattern=r"^[a-z][a-z0-9_-]{0,30}$")
    # Where backups and archived WAL go: a local directory, or an S3-compatible bucket.
    repo_type: Literal["posix", "s3"] = "posix"
    repo_path: Path = Path("./staybook-backups/repo")
    s3_endpoint: str | None = None
    s3_port: int = Field(443, ge=1, le=65535)
    s3_bucket: str | None = None
    s3_region: str = "eu-west-1"
    s3_key: SecretStr | None = None
    s3_key_secret: SecretStr | None = None
    s3_verify_tls: bool = True
    # Backups are encrypted (AES-256-CBC); restoring needs the same passphrase.
    cipher_pass: SecretStr | None = None
    retention_full_days: int = Field(35, ge=1, le=3650)
    # The primary cluster pgBackRest backs up: its data directory, port and socket directory.
    pg_data_dir: Path | None = None
    pg_port: int = Field(5432, ge=1, le=65535)
    pg_socket_dir: str = "/var/run/postgresql"
    # Owner of the cluster's files; pgBackRest and the server run as this user.
    pg_owner: str = "postgres"
    # A WAL segment is archived at least this often, even when quiet: the RPO without a replica.
    archive_timeout_seconds: int = Field(60, ge=1, le=3600)
    # pgBackRest's configuration, lock and log files are written here.
    work_dir: Path = Path("./staybook-backups")


class RegionSettings(BaseModel):
    """A residency region with a database of its own: its users' sealed personal data is stored
    there and nowhere else (`STAYBOOK_REGIONS__US__DATABASE_URL`, docs/operations/recovery.md)."""

    database_url: str

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        return Settings._async_driver(url)


class PersonalizationSettings(BaseModel):
    # Parquet archive of signals (day partitions): a directory or an s3:// URI (docs/personalization.md).
    archive_dir: str = "./staybook-signals"
    # Trained model versions.
    model_dir: Path = Path("./staybook-models")
    max_batch_signals: int = Field(500, ge=1, le=5000)
    max_signal_bytes: int = Field(8 * 1024, ge=256, le=64 * 1024)
    # Gzip bodies are inflated up to this many bytes (a compressed bomb is refused, not expanded).
    max_inflated_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024)
    max_future_seconds: int = Field(300, ge=0)
    max_age_days: int = Field(7, ge=1, le=30)
    # Decay: a signal counts half after this long (profiles), and for trending popularity.
    profile_half_life_hours: float = Field(14 * 24, gt=0)
    trending_half_life_hours: float = Field(48, gt=0)
    # Decayed scores grow from this epoch (forward decay: out-of-order signals add up exactly).
    decay_epoch: date = date(2026, 1, 1)
    profile_ttl_days: int = Field(30, ge=1)
    profile_cap: int = Field(200, ge=10, le=10_000)
    recent_views: int = Field(50, ge=5, le=500)
    covisit_cap: int = Field(100, ge=5, le=1000)
    stream_max_age_days: int = Field(7, ge=1, le=30)
    stream_duplicate_window_seconds: int = Field(600, ge=10)
    # Signals of searches served are gathered for this long and published as one batch.
    search_signals_flush_seconds: float = Field(1.0, gt=0, le=60)
    # 0 switches the periodic retraining off.
    retrain_interval_seconds: int = Field(6 * 3600, ge=0)


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
    # A streaming standby (`staybook dr standby`) for reads that may lag: host listings and data
    # exports. Unset: every read goes to the primary. Its lag is a metric (docs/operations/recovery.md).
    database_replica_url: str | None = None
    # Residency regions with a database of their own (see RegionSettings). A user of a region not
    # listed keeps their personal data in database_url, as every user does by default.
    regions: dict[str, RegionSettings] = Field(default_factory=dict)
    database_pool_size: int = Field(10, ge=1, le=200)
    database_max_overflow: int = Field(10, ge=0, le=200)
    database_echo: bool = False
    # Pre-ping costs three round trips per connection checkout on asyncpg (BEGIN, ping, ROLLBACK),
    # several per request. Off: a connection found dead fails its request (a 500; the idempotency
    # claim is released, so the client's retry is safe) and the pool drops every connection.
    database_pool_pre_ping: bool = False
    # Connections are renewed after this many seconds (server-side idle timeouts, failovers).
    database_pool_recycle_seconds: int = Field(1800, ge=-1)
    # Off when database_url is a transaction-pooling PgBouncer older than 1.21 (or one without
    # max_prepared_statements): a statement prepared by name on one server connection would be
    # looked for on another. Off, every statement is parsed afresh as an unnamed one (docs/adr/0018).
    database_prepared_statements: bool = True
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
    # Share of new traces recorded (parent-based: an incoming or event-carried trace keeps its flag).
    trace_sample_ratio: float = Field(0.1, ge=0, le=1)
    # Client spans (every PostgreSQL statement, Redis command, outgoing HTTP call) through the
    # OpenTelemetry instrumentations. Off by default: the asyncpg one doubled the round trips of a
    # statement here (bench/results/tracing.json), too much for the booking hot paths.
    trace_client_calls: bool = False

    http_host: str = "127.0.0.1"
    http_port: int = Field(8000, ge=0, le=65535)
    # Run the relay, consumers and periodic jobs inside the API process (the demo does).
    run_worker_in_process: bool = False

    outbox_batch_size: int = Field(500, ge=1, le=10_000)
    outbox_poll_seconds: float = Field(0.1, gt=0, le=60)
    outbox_retention_hours: int = Field(72, ge=1)
    # After a restore or a failover, events published this long before the newest published one go
    # out again: their consumers' records may have been rolled back with the database (inboxes
    # drop what they had kept). Longer than consumers ever lag behind the relay.
    outbox_republish_after_restore_seconds: int = Field(600, ge=0, le=86_400)
    consumer_max_deliver: int = Field(5, ge=1, le=100)
    consumer_backoff_seconds: float = Field(0.5, ge=0)
    # A durable consumer gathers what arrives this long after an event and handles it all in one
    # transaction (ADR 0013): a larger window means fewer transactions and later handling.
    consumer_batch_seconds: float = Field(0.5, ge=0, le=10)

    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    identity: IdentitySettings = Field(default_factory=IdentitySettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    inventory: InventorySettings = Field(default_factory=InventorySettings)
    booking: BookingSettings = Field(default_factory=BookingSettings)
    payments: PaymentsSettings = Field(default_factory=PaymentsSettings)
    search: SearchSettings = Field(default_factory=SearchSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    web: WebSettings = Field(default_factory=WebSettings)
    backup: BackupSettings = Field(default_factory=BackupSettings)
    personalization: PersonalizationSettings = Field(default_factory=PersonalizationSettings)

    @field_validator("database_replica_url")
    @classmethod
    def _replica_async_driver(cls, url: str | None) -> str | None:
        if url is None or not url.strip():
            return None
        if not url.startswith(("postgres://", "postgresql")):
            raise ValueError("database_replica_url must be a postgresql:// URL (a standby of database_url)")
        return cls._async_driver(url)

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
    def _known_regions(self) -> Settings:
        unknown = sorted(set(self.regions) - set(self.identity.regions))
        if unknown:
            raise ValueError(f"regions {', '.join(unknown)} are not in identity.regions")
        return self

    @model_validator(mode="after")
    def _default_jwt_key(self) -> Settings:
        if not self.jwt_keys:
            self.jwt_keys = {self.jwt_active_key_id: self.secret_key}
        if self.jwt_active_key_id not in self.jwt_keys:
            raise ValueError(f"jwt_active_key_id {self.jwt_active_key_id!r} is not one of jwt_keys")
        return self

    @model_validator(mode="after")
    def _links_to_the_served_port(self) -> Settings:
        if self.notifications.public_base_url is None:
            # A wildcard bind address is not one a client can be sent to; this machine's loopback is.
            wildcard = self.http_host in ("0.0.0.0", "::", "")  # noqa: S104 - compared, not bound
            host = "127.0.0.1" if wildcard else self.http_host
            self.notifications.public_base_url = f"http://{host}:{self.http_port}"
        return self

    @property
    def audit_anchor_file(self) -> Path:
        """Where the audit chain's signed heads are appended (see `identity.audit_anchor_file`)."""
        if self.identity.audit_anchor_file is not None:
            return self.identity.audit_anchor_file
        if self.is_sqlite:
            database = self.database_url.split(":///", 1)[-1]
            if database and database != ":memory:":
                return Path(database).with_name(Path(database).name + ".audit-anchors.jsonl")
        return Path("./staybook-audit-anchors.jsonl")

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
