"""kernel.db.Sql: one statement text, run on the unit of work's driver connection on PostgreSQL and
through SQLAlchemy on SQLite; both must type values the same way and share the unit of work's
transaction with Core and ORM writes."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Integer, column, func, select, text
from sqlalchemy.exc import OperationalError

from staybook.kernel.db import Record, Sql, insert_sql
from staybook.kernel.models import OutboxMessage
from staybook.kernel.runtime import Wiring

OUTBOX = OutboxMessage.__table__
COLUMNS = ("id", "subject", "event_type", "payload", "headers", "created_at", "attempts")
INSERT = Sql(insert_sql(OUTBOX, COLUMNS), table=OUTBOX)
READ = Sql(
    f"SELECT {', '.join(COLUMNS)} FROM outbox WHERE id = :id AND created_at <= :before",
    table=OUTBOX,
    types={"before": OUTBOX.c.created_at.type},
    returns=[OUTBOX.c[c] for c in COLUMNS],
)
COUNT_UP = Sql("UPDATE outbox SET attempts = attempts + 1 WHERE subject = :subject", table=OUTBOX)
BACKEND = Sql("SELECT pg_backend_pid() AS pid", returns=[column("pid", Integer)])
SLEEP = Sql("SELECT pg_sleep(5) AS slept")
LOCK = Sql("SELECT id FROM outbox WHERE id = :id FOR UPDATE", table=OUTBOX, returns=[OUTBOX.c.id])


class Boom(Exception):
    pass


@pytest.fixture(params=["postgres", "sqlite"])
def db_settings(request):
    return request.getfixturevalue("pg_settings" if request.param == "postgres" else "sqlite_settings")


def row(subject: str = "test.sql") -> dict:
    return {
        "id": uuid.uuid4(),
        "subject": subject,
        "event_type": "test",
        "payload": {"amount": 1200, "nights": ["2030-01-01"], "nested": {"ok": True}},
        "headers": {},
        "created_at": datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
        "attempts": 0,
    }


async def count(runtime, subject: str = "test.sql") -> int:
    async with runtime.db.session() as session:
        return await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.subject == subject)
        )


async def test_values_round_trip_with_the_same_types(db_settings, make_runtime):
    runtime = await make_runtime(db_settings, Wiring())
    written = row()
    async with runtime.db.unit_of_work() as uow:
        assert await uow.execute(INSERT, written) == 1
        read = await uow.fetchrow(READ, {"id": written["id"], "before": written["created_at"]})
    assert isinstance(read, Record)
    assert read.id == written["id"] and str(read.id) == str(written["id"])
    assert read.payload == written["payload"] and read["subject"] == "test.sql"
    assert read.created_at == written["created_at"] and read.created_at.tzinfo is not None
    async with runtime.db.unit_of_work() as uow:
        assert await uow.fetchrow(READ, {"id": uuid.uuid4(), "before": written["created_at"]}) is None
        assert await uow.execute(COUNT_UP, {"subject": "test.sql"}) == 1
        assert [r.id for r in await uow.fetch(LOCK, {"id": written["id"]})] == [written["id"]]


async def test_a_failed_unit_of_work_rolls_back_driver_and_core_writes_together(db_settings, make_runtime):
    runtime = await make_runtime(db_settings, Wiring())
    with pytest.raises(Boom):
        async with runtime.db.unit_of_work() as uow:
            await uow.execute(INSERT, row())
            await uow.session.execute(OUTBOX.insert().values(**row(), published_at=None))  # Core, same transaction
            uow.defer(INSERT, row())
            raise Boom
    assert await count(runtime) == 0
    async with runtime.db.unit_of_work() as uow:
        await uow.session.execute(OUTBOX.insert().values(**row(), published_at=None))
        await uow.execute(INSERT, row())
    assert await count(runtime) == 2


async def test_deferred_writes_go_out_at_commit_with_the_outbox(db_settings, make_runtime):
    runtime = await make_runtime(db_settings, Wiring())
    async with runtime.db.unit_of_work() as uow:
        uow.defer(INSERT, row())
        uow.defer(INSERT, row())
        assert await count(runtime) == 0  # nothing sent yet (and nothing visible outside)
        uow.defer(COUNT_UP, {"subject": "other"})
    assert await count(runtime) == 2
    with pytest.raises(Boom):
        async with runtime.db.unit_of_work() as uow:
            uow.defer(INSERT, row())
            raise Boom
    assert await count(runtime) == 2


async def test_a_driver_transaction_commits_or_rolls_back_as_a_whole(db_settings, make_runtime):
    runtime = await make_runtime(db_settings, Wiring())
    with pytest.raises(Boom):
        async with runtime.db.transaction() as uow:
            await uow.execute(INSERT, row())
            uow.defer(INSERT, row())
            raise Boom
    assert await count(runtime) == 0
    async with runtime.db.transaction() as uow:
        await uow.execute(INSERT, row())
        uow.defer(INSERT, row())
    assert await count(runtime) == 2


async def test_autocommit_statements_stand_alone_on_postgres(pg_settings, make_runtime):
    runtime = await make_runtime(pg_settings, Wiring())
    with pytest.raises(Boom):
        async with runtime.db.transaction(autocommit=True) as uow:
            await uow.execute(INSERT, row())
            raise Boom
    assert await count(runtime) == 1  # committed by itself, no BEGIN/COMMIT around it
    async with runtime.db.transaction() as uow:
        with pytest.raises(RuntimeError):
            uow.session  # noqa: B018 - a driver transaction has no session to mix in


async def test_a_connection_lost_mid_transaction_is_a_503_and_leaves_the_pool(pg_settings, make_runtime):
    runtime = await make_runtime(pg_settings, Wiring())
    with pytest.raises(OperationalError):
        async with runtime.db.transaction() as uow:
            await uow.execute(INSERT, row())
            pid = (await uow.fetchrow(BACKEND)).pid
            async with runtime.db.session() as session:  # another connection ends this one's backend
                await session.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await uow.execute(INSERT, row())
    for _ in range(3):  # the pool hands out working connections again
        async with runtime.db.transaction() as uow:
            await uow.execute(INSERT, row())
    assert await count(runtime) == 3


async def test_a_cancelled_driver_transaction_stays_cancelled_and_the_pool_stays_usable(pg_settings, make_runtime):
    runtime = await make_runtime(pg_settings, Wiring())

    async def slow() -> None:
        async with runtime.db.transaction() as uow:
            await uow.execute(INSERT, row())
            await uow.fetchrow(SLEEP)

    with pytest.raises(TimeoutError):  # wait_for's cancellation, not a 503
        await asyncio.wait_for(slow(), timeout=0.3)
    for _ in range(3):  # whatever state the cancelled connection was left in, it is not handed out again
        async with runtime.db.transaction() as uow:
            await uow.execute(INSERT, row())
    async with runtime.db.unit_of_work() as uow:
        await uow.execute(INSERT, row())
    assert await count(runtime) == 4


def test_binds_become_positional_once():
    statement = Sql("SELECT id FROM outbox WHERE subject = :a AND event_type = :b OR subject = :a::text", table=OUTBOX)
    assert statement.postgres == "SELECT id FROM outbox WHERE subject = $1 AND event_type = $2 OR subject = $1::text"
    assert statement.names == ("a", "b")


async def test_many_deferred_writes_are_sent_in_statements_postgres_can_take(db_settings, make_runtime):
    # 5,000 outbox rows deferred in one unit of work: 35,000 binds, over PostgreSQL's 32,767 a statement.
    runtime = await make_runtime(db_settings, Wiring())
    async with runtime.db.transaction() as uow:
        for _ in range(5_000):
            uow.defer(INSERT, row("test.many"))
    assert await count(runtime, "test.many") == 5_000
