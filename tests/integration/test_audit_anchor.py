"""The audit chain's signed heads, kept outside the database, make truncation show."""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import text

from staybook.identity import anchor, audit, seed, service
from staybook.identity.anchor import AnchorSigner
from staybook.identity.jobs import JOBS


@pytest.fixture(params=["sqlite", "postgres"])
def db_settings(request):
    return request.getfixturevalue("sqlite_settings" if request.param == "sqlite" else "pg_settings")


async def add_entries(runtime, count: int) -> None:
    async with runtime.db.unit_of_work() as uow:
        await audit.append_many(
            uow.session, [audit.AuditRecord("test.event", "thing", resource_id=str(n)) for n in range(count)]
        )


async def delete_newest(runtime, count: int) -> None:
    """What someone holding the database's owner role can do: lift the append-only trigger and delete."""
    async with runtime.db.unit_of_work() as uow:
        postgres = runtime.db.dialect == "postgresql"
        if postgres:
            await uow.session.execute(text("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only"))
        await uow.session.execute(
            text("DELETE FROM audit_log WHERE seq > (SELECT max(seq) FROM audit_log) - :n"), {"n": count}
        )
        if postgres:
            await uow.session.execute(text("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only"))


async def test_an_untampered_chain_verifies_against_its_anchor(db_settings, make_runtime):
    runtime = await make_runtime(db_settings)
    await add_entries(runtime, 5)
    first = await anchor.anchor_chain(runtime)
    assert first is not None and first.seq == 5
    assert await anchor.anchor_chain(runtime) is None  # nothing new since
    await add_entries(runtime, 2)  # entries after the newest anchor are fine
    status = await service.verify_audit_chain(runtime)
    assert status["valid"] is True and status["entries"] == 7 and status["anchored_seq"] == 5
    assert (await anchor.anchor_chain(runtime)).seq == 7
    lines = runtime.settings.audit_anchor_file.read_bytes().splitlines()
    assert [orjson.loads(line)["seq"] for line in lines] == [5, 7]
    assert (await service.verify_audit_chain(runtime))["valid"] is True


@pytest.mark.parametrize("deleted", [1, 3])
async def test_deleting_the_newest_entries_is_detected(db_settings, make_runtime, deleted):
    runtime = await make_runtime(db_settings)
    await add_entries(runtime, 6)
    await anchor.anchor_chain(runtime)
    before = await service.verify_audit_chain(runtime)
    assert before["valid"] is True

    await delete_newest(runtime, deleted)
    # What is left is still a consistent hash chain: only the anchor tells.
    async with runtime.db.session() as session:
        assert (await audit.verify_chain(session))["valid"] is True
    status = await service.verify_audit_chain(runtime)
    assert status["valid"] is False
    assert status["broken_at"] == 7 - deleted and status["anchored_seq"] == 6
    assert "gone" in status["problem"]

    # Anchoring the shortened chain would bless the deletion: the job refuses, the verdict stays.
    assert await anchor.anchor_chain(runtime) is None
    await add_entries(runtime, deleted + 2)  # regrowing past the anchor does not hide it either
    assert (await service.verify_audit_chain(runtime))["valid"] is False


async def test_a_forged_anchor_is_refused(db_settings, make_runtime):
    runtime = await make_runtime(db_settings)
    await add_entries(runtime, 4)
    await anchor.anchor_chain(runtime)
    await delete_newest(runtime, 2)
    # Rewriting the anchor to the shorter head needs the key, which the database does not hold.
    forged = anchor.Anchor(2, "0" * 64, "2026-12-02T00:00:00.000000+00:00", "f" * 64)
    anchor.AnchorFile(runtime.settings.audit_anchor_file).append(forged)
    status = await service.verify_audit_chain(runtime)
    assert status["valid"] is False and "signature" in status["problem"]
    assert AnchorSigner(runtime.settings).genuine(forged) is False


async def test_the_worker_anchors_and_admins_see_the_verdict(sqlite_settings, client_for):
    from tests.integration.test_identity_flows import auth, fast_hashing, login

    assert "identity.audit-anchor" in [job.name for job in JOBS]
    settings = fast_hashing(sqlite_settings).model_copy(update={"run_worker_in_process": True})
    async with client_for(settings) as client:
        runtime = client.app.state.runtime
        summary = await seed.seed_demo(runtime, properties=0, seed=1)
        account = next(a for a in summary["accounts"] if a["role"] == "admin")
        admin = await login(client, account["email"], account["password"])
        await anchor.anchor_chain(runtime)
        ok = (await client.get("/api/v1/admin/audit-log/verify", headers=auth(admin))).json()
        assert ok["valid"] is True and ok["anchored_seq"] >= 1
        await delete_newest(runtime, 1)
        tampered = (await client.get("/api/v1/admin/audit-log/verify", headers=auth(admin))).json()
        assert tampered["valid"] is False and tampered["anchored_seq"] == ok["anchored_seq"]
