"""Schemathesis over the whole OpenAPI document, against the demo app (worker in process, demo data
seeded; on SQLite as `staybook demo` runs, and on PostgreSQL), as an anonymous client, a guest, a
host and an admin.

Every operation gets a bounded number of generated requests (valid and invalid ones, and the
documented examples). Each answer must be no server error, have a documented status and content
type, and match its documented schema. Half the requests name the demo's own resources in their
path, so the operations are reached past their 404s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import uuid
from collections.abc import Iterator
from urllib.parse import urlparse

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from staybook import migrate
from staybook.app import create_app
from staybook.cli import _seed
from staybook.kernel.settings import Settings
from tests.conftest import PG_ADMIN_URL, bearer, need

MAX_EXAMPLES = 12
CHECKS = [
    schemathesis.checks.not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
ROLES = ("anonymous", "guest", "host", "admin")
# Operations that revoke the caller's own tokens (or erase the account) run as throwaway accounts,
# so the demo accounts keep signing the other requests in.
THROWAWAY_ACCOUNTS = 40
SELF_REVOKING = {"DELETE /api/v1/me", "POST /api/v1/me/sessions/revoke", "POST /api/v1/me/password"}


def _demo_settings(directory, database_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        environment="test",
        log_json=False,
        log_level="ERROR",
        catalog={"media_dir": str(directory / "media")},
        notifications={"mail_sink_dir": str(directory / "mail")},
        personalization={"archive_dir": str(directory / "signals"), "model_dir": str(directory / "models")},
        run_worker_in_process=True,
        # The per-IP limit would answer most of the run with 429 (documented, but it reaches nothing).
        gateway={"rate_limit_requests": 1_000_000},
    )


@contextlib.contextmanager
def _database(kind: str, directory) -> Iterator[str]:
    """The demo's SQLite file, or a PostgreSQL database of its own (its 32-bit columns and text rules
    are not SQLite's: a run there found a price that overflowed one)."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{directory / 'staybook.db'}"
        return
    import psycopg

    need("PostgreSQL", PG_ADMIN_URL, 5432)
    name = f"staybook_contract_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    parsed = urlparse(PG_ADMIN_URL)
    try:
        yield f"postgresql+asyncpg://{parsed.username or 'postgres'}@{parsed.hostname}:{parsed.port or 5432}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def demo_api(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp("contract")
    with _database(request.param, directory) as database_url:
        yield from _demo_api(_demo_settings(directory, database_url))


def _demo_api(settings: Settings):
    migrate.upgrade(settings)
    asyncio.run(_seed(settings, 5, 7))
    asyncio.run(_register_throwaways(settings, THROWAWAY_ACCOUNTS))
    ids, users, throwaways = asyncio.run(_ids_from_database(settings))
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json",
        app,
        config=SchemathesisConfig.from_dict({"generation": {"max-examples": MAX_EXAMPLES}}),
    )
    tokens = {"anonymous": {}} | {role: bearer(settings, role, users[role]) for role in ROLES[1:]}
    answers: collections.Counter = collections.Counter()
    yield {
        "schema": schema,
        "tokens": tokens,
        "ids": ids,
        "answers": answers,
        "throwaways": itertools.cycle([bearer(settings, "guest", user) for user in throwaways]),
    }
    asgi.shutdown_lifespans()
    _report(answers)


async def _register_throwaways(settings: Settings, count: int) -> None:
    from staybook.app import collect_wiring
    from staybook.identity import bootstrap as identity_bootstrap
    from staybook.identity import service as identity
    from staybook.identity.schemas import RegisterRequest
    from staybook.kernel.runtime import Runtime

    runtime = Runtime(settings, collect_wiring())
    await runtime.start()
    credentials = identity_bootstrap.build(runtime)
    try:
        for index in range(count):
            account = RegisterRequest(email=f"throwaway{index}@example.com", password=uuid.uuid4().hex, name="Tess")
            await identity.register(runtime, credentials, account, identity.RequestInfo(ip=f"192.0.2.{index}"))
    finally:
        await credentials.close()
        await runtime.close()


async def _ids_from_database(settings: Settings):
    """Ids of the seeded resources by path parameter name; the demo accounts' and the throwaways'."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as connection:
            property_id, room_type_id = (
                await connection.execute(text("SELECT property_id, id FROM room_types ORDER BY id LIMIT 1"))
            ).one()
            users = (await connection.execute(text("SELECT id, role FROM users ORDER BY id"))).all()
    finally:
        await engine.dispose()
    ids = {"property_id": str(property_id), "room_type_id": str(room_type_id)}
    # Ids are time-ordered (UUIDv7): the seeded demo accounts come first, one of each role.
    demo: dict[str, uuid.UUID] = {}
    throwaways = []
    for user_id, role in users:
        if role in demo:
            throwaways.append(uuid.UUID(str(user_id)))
        else:
            demo[role] = uuid.UUID(str(user_id))
    assert len(demo) == 3 and len(throwaways) == THROWAWAY_ACCOUNTS, (demo, len(throwaways))
    return ids, demo, throwaways


def _report(answers: collections.Counter) -> None:
    """The run's figures; and a run that reached nothing (every answer a 401 or a 404) fails."""
    operations = {operation for operation, _, _ in answers}
    succeeded = {operation for operation, _, status in answers if status < 300}
    by_status = collections.Counter()
    for (_, _, status), count in answers.items():
        by_status[status] += count
    print(
        f"\nschemathesis: {sum(answers.values())} requests over {len(operations)} operations, "
        f"{len(succeeded)} answered 2xx at least once; by status {dict(sorted(by_status.items()))}"
    )
    for role in ROLES:
        assert any(status < 300 for _, who, status in answers if who == role), f"no 2xx answer as {role}"
    assert len(succeeded) >= len(operations) // 2, sorted(operations - succeeded)


@pytest.fixture(scope="module")
def demo_schema(demo_api):
    return demo_api["schema"]


schema = schemathesis.pytest.from_fixture("demo_schema")


def _draw(case) -> tuple[tuple[str, ...], bool]:
    """The callers and whether the path names demo resources, fixed by the case's own data (the same
    case, replayed while hypothesis shrinks a failure, is sent the same way). An operation that
    takes no input has a handful of distinct cases only: each is sent as every caller."""
    definition = case.operation.definition.raw
    if not definition.get("parameters") and "requestBody" not in definition:
        return ROLES, False
    digest = hashlib.sha256(repr((case.method, case.path_parameters, case.query, case.body)).encode()).digest()
    return (ROLES[digest[0] % len(ROLES)],), digest[1] % 2 == 0


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_keeps_its_contract(case, demo_api):
    roles, known = _draw(case)
    if known and case.path_parameters:
        for name, value in demo_api["ids"].items():
            if name in case.path_parameters:
                case.path_parameters[name] = value
    for role in roles:
        headers = dict(demo_api["tokens"][role])
        if role != "anonymous" and case.operation.label in SELF_REVOKING:
            headers = next(demo_api["throwaways"])
        response = case.call(headers=headers)
        demo_api["answers"][case.operation.label, role, response.status_code] += 1
        case.validate_response(response, checks=CHECKS, headers=headers)
