"""Data residency on two regions of one box: "eu" and "us" each have a PostgreSQL cluster of their
own (initdb, pg_ctl) beside the home database. A dump of each database is grepped for each user's
sealed record: an EU user's is in the EU cluster only, a US user's in the US cluster only, and the
home database (which a standby in the other region copies) holds neither."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr

from staybook import cli, migrate
from staybook.identity import bootstrap as identity_bootstrap
from staybook.identity import privacy as identity_privacy
from staybook.identity.pii import new_master_key
from staybook.kernel.settings import Settings
from staybook.recovery.drill import free_port
from staybook.recovery.postgres import LocalCluster, RecoveryError, as_owner, pg_bin_dir
from tests.conftest import REQUIRE_SERVICES
from tests.integration.test_identity_flows import auth, fast_hashing, login, register

pytestmark = pytest.mark.integration

DATABASE = "staybook_region"
PASSWORD = "violet-harbour-91"


@pytest.fixture
def regions(worker_id_suffix):
    """Two clusters, "eu" and "us", on free ports of this worker's range; destroyed afterwards."""
    try:
        bin_dir = pg_bin_dir()
    except RecoveryError as error:
        if REQUIRE_SERVICES:
            pytest.fail(str(error))
        pytest.skip(str(error))
    worker = int("".join(ch for ch in worker_id_suffix.split("_")[0] if ch.isdigit()) or 0)
    base = Path(tempfile.mkdtemp(prefix="staybook-regions-"))
    base.chmod(0o755)
    clusters = {}
    port = 55100 + worker * 10
    try:
        for region in ("eu", "us"):
            cluster = LocalCluster(
                base / region, free_port(port), socket_dir=base / f"{region}-sockets", bin_dir=bin_dir
            )
            cluster.init()
            cluster.start()
            cluster.create_database(DATABASE)
            clusters[region] = cluster
            port = cluster.port + 1
        yield clusters
    finally:
        for cluster in clusters.values():
            cluster.stop("immediate")
        shutil.rmtree(base, ignore_errors=True)


def dump(url: str) -> str:
    """The database as pg_dump writes it (bytea as hex): what a grep of a backup would see."""
    command = [str(pg_bin_dir() / "pg_dump"), "--data-only", "--no-owner", url.replace("+asyncpg", "")]
    return subprocess.run(as_owner(command), capture_output=True, text=True, check=True).stdout  # noqa: S603


def stored_record(cluster: LocalCluster, user_id: str) -> bytes | None:
    rows = cluster.query(f"SELECT pii FROM user_personal_data WHERE user_id = '{user_id}'", database=DATABASE)
    return bytes(rows[0][0]) if rows else None


async def test_personal_data_is_stored_in_the_users_region_only(pg_settings, regions, client_for):
    settings = fast_hashing(
        Settings(
            **{
                **pg_settings.model_dump(),
                "regions": {region: {"database_url": c.url(DATABASE)} for region, c in regions.items()},
            }
        )
    )
    # `staybook check` tests each region's database: unmigrated, then at the heads with the rest.
    assert [f.split(":")[0] for f in await cli._check_connections(settings)] == [
        "region eu database and schema", "region us database and schema",
    ]  # fmt: skip
    await asyncio.to_thread(migrate.upgrade, settings)
    assert await cli._check_connections(settings) == []
    marker = uuid.uuid4().hex[:8]
    people = {
        "eu": {"email": f"elsa.{marker}@example.eu", "name": f"Elsa Vandermeer {marker}", "phone": "+31205550101"},
        "us": {"email": f"ulysses.{marker}@example.com", "name": f"Ulysses Grant {marker}", "phone": "+12125550199"},
    }
    databases = {"home": settings.database_url, **{region: c.url(DATABASE) for region, c in regions.items()}}

    async with client_for(settings) as client:
        ids, tokens = {}, {}
        for region, person in people.items():
            await register(client, password=PASSWORD, region=region, **person)
            tokens[region] = await login(client, email=person["email"], password=PASSWORD)
            me = (await client.get("/api/v1/me", headers=auth(tokens[region]))).json()
            ids[region] = me["id"]
            assert (me["email"], me["name"], me["phone"], me["region"]) == (
                person["email"], person["name"], person["phone"], region,
            )  # fmt: skip

        sealed = {region: stored_record(regions[region], ids[region]) for region in people}
        assert all(sealed.values())
        dumps = {name: dump(url) for name, url in databases.items()}
        for region, record in sealed.items():
            holders = [name for name, text in dumps.items() if record.hex() in text]
            assert holders == [region]
            assert [name for name, text in dumps.items() if ids[region] in text and name != "home"] == [region]
            for value in people[region].values():
                assert not any(value in text for text in dumps.values())  # sealed everywhere
        assert stored_record(regions["eu"], ids["us"]) is None and stored_record(regions["us"], ids["eu"]) is None

        export = (await client.get("/api/v1/me/export", headers=auth(tokens["eu"]))).json()
        assert {k: export["profile"][k] for k in ("email", "name", "phone")} == people["eu"]

        # Erasure removes the record from its region; the other region's is untouched.
        assert (await client.delete("/api/v1/me", headers=auth(tokens["us"]))).status_code == 204
        assert stored_record(regions["us"], ids["us"]) is None
        assert stored_record(regions["eu"], ids["eu"]) == sealed["eu"]
        assert sealed["us"].hex() not in dump(databases["us"])

        # A user who moves takes their record along: it leaves the EU cluster for the US one.
        moved = await client.patch("/api/v1/me", json={"region": "us"}, headers=auth(tokens["eu"]))
        assert moved.status_code == 200, moved.text
        assert stored_record(regions["eu"], ids["eu"]) is None
        assert stored_record(regions["us"], ids["eu"]) is not None
        me = (await client.get("/api/v1/me", headers=auth(tokens["eu"]))).json()
        assert (me["email"], me["name"], me["region"]) == (people["eu"]["email"], people["eu"]["name"], "us")
        assert not any(
            record.hex() in dump(databases["home"])
            for record in (sealed["eu"], stored_record(regions["us"], ids["eu"]))
        )


async def test_a_master_key_rotation_rewraps_the_records_in_every_region(
    pg_settings, regions, client_for, make_runtime
):
    first, second = SecretStr(new_master_key()), SecretStr(new_master_key())
    base = fast_hashing(
        Settings(
            **{
                **pg_settings.model_dump(),
                "regions": {region: {"database_url": c.url(DATABASE)} for region, c in regions.items()},
            }
        )
    )
    await asyncio.to_thread(migrate.upgrade, base)

    def keyed(active, active_id, previous) -> Settings:
        identity = base.identity.model_copy(
            update={"pii_master_key": active, "pii_master_key_id": active_id, "pii_previous_master_keys": previous}
        )
        return base.model_copy(update={"identity": identity})

    emails = {region: f"rotating.{region}.{uuid.uuid4().hex[:6]}@example.org" for region in regions}
    async with client_for(keyed(first, "m1", {})) as client:
        for region, email in emails.items():
            await register(client, email=email, password=PASSWORD, region=region)
    key_ids = "SELECT pii_key_id FROM user_personal_data"
    assert [regions[r].query(key_ids, database=DATABASE) for r in regions] == [[("m1",)], [("m1",)]]

    runtime = await make_runtime(keyed(second, "m2", {"m1": first}))
    credentials = identity_bootstrap.build(runtime)  # as `staybook rotate-pii-key` builds them
    assert await identity_privacy.rotate_pii_keys(runtime, credentials) == 2
    assert await identity_privacy.rotate_pii_keys(runtime, credentials) == 0
    await credentials.close()
    assert [regions[r].query(key_ids, database=DATABASE) for r in regions] == [[("m2",)], [("m2",)]]
    async with client_for(keyed(second, "m2", {})) as client:  # the old key is no longer needed
        for email in emails.values():
            tokens = await login(client, email=email, password=PASSWORD)
            assert (await client.get("/api/v1/me", headers=auth(tokens))).json()["email"] == email
