"""Reads that may lag go to a streaming standby: a host's listing is served from it, and the
replica-lag metric shows how far behind it is. Real clusters (initdb, pg_basebackup), stopped
replay on the standby to make the lag visible."""

from __future__ import annotations

import asyncio
import time
import uuid

from staybook import migrate
from staybook.kernel.settings import Settings
from staybook.recovery.drill import free_port
from tests.bookings import seed_room_type
from tests.conftest import bearer
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
    recovery_dir, first_port, client_for  # noqa: F811 - fixtures
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
