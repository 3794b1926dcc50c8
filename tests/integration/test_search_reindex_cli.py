"""`staybook search reindex` against a seeded database: the rebuilt Typesense index serves every
property, every API process rebuilds its in-process index when the command asks over the bus, and
API processes answering meanwhile see no errors."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

import orjson
import typesense

from tests.integration.test_search_api import PARAMS, eventually, seed


async def test_reindex_command_rebuilds_while_the_api_answers(pg_settings, typesense_url, make_runtime, client_for):
    live = pg_settings.model_copy(
        update={
            "typesense_url": typesense_url,
            "bus_namespace": "r" + uuid.uuid4().hex[:10],
            "search": pg_settings.search.model_copy(update={"backend": "typesense", "cache_seconds": 0}),
        }
    )
    seeder = await make_runtime(live)
    first = await seed(seeder)
    async with client_for(live) as client:
        found = (await client.get("/api/v1/search", params=PARAMS)).json()
        assert {i["property_id"] for i in found["items"]} == {str(i) for i in first}
        # Rows written straight to the tables, without events: only a rebuild finds them.
        later = await seed(seeder)
        env = {
            **os.environ,
            "STAYBOOK_DATABASE_URL": live.database_url,
            "STAYBOOK_TYPESENSE_URL": typesense_url,
            "STAYBOOK_SEARCH__BACKEND": "typesense",
            "STAYBOOK_BUS_NAMESPACE": live.bus_namespace,
            "STAYBOOK_ENVIRONMENT": "test",
        }
        process, statuses, (out, err) = await run_reindex_while_querying(client, env)
    assert process.returncode == 0, err.decode()[-2000:]
    report = orjson.loads(out.decode().strip().splitlines()[-1])
    assert report["backend"] == "typesense" and report["properties"] == 6 and report["room_types"] == 6
    assert report["room_nights"] >= 6 * 30
    assert statuses and set(statuses) == {200}
    # The collection behind the alias now holds every property, the ones without events too.
    client = typesense.Client(
        {
            "nodes": [{"host": "127.0.0.1", "port": int(typesense_url.rsplit(":", 1)[1]), "protocol": "http"}],
            "api_key": live.typesense_api_key.get_secret_value(),
            "connection_timeout_seconds": 5,
        }
    )
    alias = f"{live.bus_namespace}_{live.search.typesense_collection}"
    hits = client.collections[alias].documents.search({"q": "spree", "query_by": "name", "per_page": 50})
    assert {h["document"]["id"] for h in hits["hits"]} == {str(i) for i in first + later}


async def run_reindex_while_querying(client, env: dict[str, str]):
    """Runs `staybook search reindex` as its own process; returns it, the search statuses seen
    while it ran, and its output."""
    command = Path(sys.executable).parent / "staybook"
    process = await asyncio.create_subprocess_exec(
        str(command), "search", "reindex", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    finished = asyncio.ensure_future(process.communicate())
    statuses = []
    while not finished.done():
        statuses.append((await client.get("/api/v1/search", params=PARAMS)).status_code)
        await asyncio.sleep(0.005)
    return process, statuses, finished.result()


async def test_reindex_command_rebuilds_the_index_of_every_api_process(live_settings, make_runtime, client_for):
    """The in-process index lives in each API process: the command reaches them through the
    outbox and the bus, and each swaps in a rebuilt index while it keeps answering."""
    seeder = await make_runtime(live_settings)
    first = await seed(seeder)
    async with client_for(live_settings) as client:
        found = (await client.get("/api/v1/search", params=PARAMS)).json()
        assert {i["property_id"] for i in found["items"]} == {str(i) for i in first}
        # Rows written straight to the tables, without events: only a rebuild finds them.
        later = await seed(seeder)
        env = {
            **os.environ,
            "STAYBOOK_DATABASE_URL": live_settings.database_url,
            "STAYBOOK_BUS_NAMESPACE": live_settings.bus_namespace,
            "STAYBOOK_ENVIRONMENT": "test",
        }
        process, statuses, (out, err) = await run_reindex_while_querying(client, env)
        assert process.returncode == 0, err.decode()[-2000:]
        report = orjson.loads(out.decode().strip().splitlines()[-1])
        assert report["backend"] == "memory" and report["properties"] == 6 and report["api_rebuild_requested"]

        async def all_six_found() -> bool:
            response = await client.get("/api/v1/search", params=PARAMS)
            statuses.append(response.status_code)
            return {i["property_id"] for i in response.json()["items"]} == {str(i) for i in first + later}

        await eventually(all_six_found)
    assert set(statuses) == {200}
