"""Reads that may lag go to a streaming standby: a host's listing and a GDPR export are served
from it, a search rebuild reads it once it has caught up, and the replica-lag metric shows how
far behind it is. Real clusters (initdb, pg_basebackup), stopped
replay on the standby to make the lag visible."""

from __future__ import annotations

import asyncio
import time
import uuid

from staybook import migrate
from staybook.kernel.settings import Settings
from staybook.recovery.drill import free_port
from staybook.search import service as search_service
from staybook.search.bootstrap import search_deps
from tests.bookings import hold_body, seed_room_type
from tests.conftest import bearer
from tests.integration.test_identity_flows import auth, fast_hashing, login, register
from tests.integration.test_recovery import _primary, first_port, recovery_dir  # noqa: F401 - fixtures

DATABASE = "staybook"


async def _listed(client, headers) -> set[str]:
    page = await client.get("/api/v1/hosts/me/properties", headers=headers)
    assert page.status_code == 200, page.text
    return {item["id"] for item in page.json()["items"]}


async def _eventually(check, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "the standby did not catch up"
        await asyncio.sleep(0.1)


async def test_host_listings_are_read_from_the_standby_and_its_lag_is_measured(
    recovery_dir,  # noqa: F811 - fixtures
    first_port,  # noqa: F811
    client_for,
):
    primary, _ = _primary(recovery_dir, first_port)
    primary.create_database(DATABASE)
    settings = Settings(
        database_url=primary.url(DATABASE, driver="postgresql+asyncpg"),
        environment="test",
        log_json=False,
        identity={"audit_anchor_file": str(recovery_dir / "anchors.jsonl")},
    )
    await asyncio.to_thread(migrate.upgrade, settings)
    standby = primary.make_standby(recovery_dir / "standby", free_port(primary.port + 1))
    settings = Settings(**{**settings.model_dump(), "database_replica_url": standby.url(DATABASE)})
    host = uuid.uuid4()
    headers = bearer(settings, "host", user_id=host)
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        assert runtime.db.replica_engine is not None
        first = str((await seed_room_type(runtime, host_id=host))["property_id"])

        async def first_listed() -> bool:
            return first in await _listed(client, headers)

        await _eventually(first_listed)
        caught_up = await runtime.db.replica_lag_seconds()

        standby.query("SELECT pg_wal_replay_pause()", database=DATABASE)
        try:
            second = str((await seed_room_type(runtime, host_id=host))["property_id"])
            await asyncio.sleep(caught_up + 2.0)
            # Written on the primary, not yet replayed: the listing (from the standby) lacks it.
            assert await _listed(client, headers) == {first}
            assert await runtime.db.replica_lag_seconds() >= caught_up + 1.5
            assert primary.query(f"SELECT count(*) FROM properties WHERE id = '{second}'", database=DATABASE) == [(1,)]
        finally:
            standby.query("SELECT pg_wal_replay_resume()", database=DATABASE)

        async def both_listed() -> bool:
            return await _listed(client, headers) == {first, second}

        await _eventually(both_listed)


async def test_exports_read_the_standby_and_a_search_rebuild_waits_for_it_to_catch_up(
    recovery_dir,  # noqa: F811 - fixtures
    first_port,  # noqa: F811
    client_for,
):
    primary, _ = _primary(recovery_dir, first_port)
    primary.create_database(DATABASE)
    settings = Settings(
        database_url=primary.url(DATABASE, driver="postgresql+asyncpg"),
        environment="test",
        log_json=False,
        identity={"audit_anchor_file": str(recovery_dir / "anchors.jsonl")},
    )
    await asyncio.to_thread(migrate.upgrade, settings)
    standby = primary.make_standby(recovery_dir / "standby", free_port(primary.port + 1))
    settings = fast_hashing(Settings(**{**settings.model_dump(), "database_replica_url": standby.url(DATABASE)}))
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        await register(client, email="eda@example.org")
        tokens = await login(client, email="eda@example.org")
        room = await seed_room_type(runtime, total=2)

        async def exported_bookings() -> list[str]:
            export = await client.get("/api/v1/me/export", headers=auth(tokens))
            assert export.status_code == 200, export.text
            return [b["id"] for b in export.json()["booking"]["bookings"]]

        assert runtime.db.replica_engine is not None
        assert await runtime.db.caught_up_reader() is runtime.db.replica_engine
        standby.query("SELECT pg_wal_replay_pause()", database=DATABASE)
        try:
            held = await client.post(
                "/api/v1/bookings",
                json=hold_body(room["room_type_id"]),
                headers=auth(tokens) | {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert held.status_code == 201, held.text
            # Held on the primary, not yet replayed: the export (from the standby) lacks it.
            assert await exported_bookings() == []
            # A rebuild would miss it on the standby: it reads the primary instead.
            assert await runtime.db.caught_up_reader(timeout=0.5) is runtime.db.engine
        finally:
            standby.query("SELECT pg_wal_replay_resume()", database=DATABASE)

        async def exported() -> bool:
            return await exported_bookings() == [held.json()["id"]]

        await _eventually(exported)

        await seed_room_type(runtime)
        # Seeded a moment ago on the primary: the rebuild waits for the standby to replay it.
        counts = await search_service.reindex(search_deps(runtime))
        assert counts["properties"] == counts["room_types"] == 2
        assert search_deps(runtime).index.property_count() == 2
