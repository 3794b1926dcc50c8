"""Database engine and the unit of work.

One ORM layer, two engines: SQLite (WAL, the demo) and PostgreSQL (production).
Both run the same Alembic history.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy import Table, TextClause, bindparam, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from staybook.kernel.models import OutboxMessage

if TYPE_CHECKING:
    from staybook.kernel.events import Event
    from staybook.kernel.settings import Settings


def create_engine(settings: Settings) -> AsyncEngine:
    if settings.is_sqlite:
        engine = create_async_engine(
            settings.database_url,
            echo=settings.database_echo,
            connect_args={"timeout": 30},
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        # SQLite has one writer: take the write lock at BEGIN so two writers queue
        # instead of failing with "database is locked" on upgrade from a read lock.
        @event.listens_for(engine.sync_engine, "begin")
        def _begin_immediate(conn) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        @event.listens_for(engine.sync_engine, "connect")
        def _no_pysqlite_autobegin(dbapi_connection, _record) -> None:
            dbapi_connection.isolation_level = None

        return engine
    return create_async_engine(
        settings.database_url,
        echo=settings.database_echo,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=settings.database_pool_pre_ping,
        pool_recycle=settings.database_pool_recycle_seconds,
        connect_args={"server_settings": {"application_name": settings.service_name}},
    )


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


class UnitOfWork:
    """One transaction: the changes of one use case plus the events it emits.

    Events go into the outbox table in the same transaction, so a change and its
    announcement commit or roll back together. After a commit the relay is woken
    so events reach the bus without waiting for the next poll.
    """

    def __init__(self, session: AsyncSession, on_commit: Callable[[], None] | None = None) -> None:
        self.session = session
        self._events: list[Event] = []
        self._on_commit = on_commit
        self.context: dict[str, Any] = {}

    def emit(self, event: Event) -> None:
        self._events.append(event)

    @property
    def pending_events(self) -> list[Event]:
        return list(self._events)

    async def flush_events(self) -> None:
        if not self._events:
            return
        rows = [event.outbox_row() for event in self._events]
        self._events.clear()
        await self.session.execute(OutboxMessage.__table__.insert(), rows)

    async def commit(self) -> None:
        had_events = bool(self._events)
        await self.flush_events()
        await self.session.commit()
        if had_events and self._on_commit:
            self._on_commit()

    async def rollback(self) -> None:
        self._events.clear()
        await self.session.rollback()


class Database:
    """Engine plus session factory, created in the app lifespan (never at import)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self._commit_listeners: list[Callable[[], None]] = []

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def on_events_committed(self, listener: Callable[[], None]) -> None:
        self._commit_listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._commit_listeners:
            listener()

    @asynccontextmanager
    async def unit_of_work(self, *, flush_wal: bool = True) -> AsyncIterator[UnitOfWork]:
        """Yields a UnitOfWork; commits when the block ends cleanly, rolls back on error.

        `flush_wal=False` (PostgreSQL) commits without waiting for the WAL flush: for records
        that only matter together with a later durable commit (which flushes the WAL before
        it, in order), such as an idempotency claim ahead of the business change.
        """
        async with self.sessions() as session:
            uow = UnitOfWork(session, self._notify)
            try:
                if not flush_wal and self.dialect == "postgresql":
                    await session.execute(text("SET LOCAL synchronous_commit = off"))
                yield uow
                await uow.commit()
            except BaseException:
                await uow.rollback()
                raise

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read-only style session for queries; nothing is committed."""
        async with self.sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()


@functools.cache
def insert_on_conflict(
    table: Table,
    columns: tuple[str, ...],
    conflict: tuple[str, ...],
    *,
    update: str | None = None,
    returning: bool = False,
    rows: int = 1,
) -> TextClause:
    """`INSERT … ON CONFLICT (conflict) DO NOTHING` (or `DO <update>`) as a statement built once.

    SQLAlchemy does not cache the compiled form of its dialect `insert().on_conflict_…()`
    constructs: each execution compiled them afresh, a large share of a hot request's CPU.
    The same text is valid on PostgreSQL and SQLite (3.35+); the bind parameters named after
    `columns` carry the table's column types, and `returning` returns every column, typed.
    `update` is the SQL after `DO` (e.g. `UPDATE SET n = t.n + 1 WHERE …`), with its own binds.
    `rows` > 1 inserts that many rows in one statement; their binds are `<column>_<row>`
    (`event_id_0`, `event_id_1`, …), see `rows_params`.
    """
    names = ", ".join(f'"{name}"' for name in columns)
    binds = [columns] if rows == 1 else [tuple(f"{name}_{row}" for name in columns) for row in range(rows)]
    values = ", ".join("(" + ", ".join(f":{bind}" for bind in row) + ")" for row in binds)
    sql = (
        f'INSERT INTO "{table.name}" ({names}) VALUES {values}'
        f" ON CONFLICT ({', '.join(conflict)}) DO {update or 'NOTHING'}"
    )
    if returning:
        sql += " RETURNING " + ", ".join(f'"{column.name}"' for column in table.c)
    statement = text(sql).bindparams(
        *(bindparam(bind, type_=table.c[name].type) for row in binds for bind, name in zip(row, columns, strict=True))
    )
    return statement.columns(*table.c) if returning else statement


def rows_params(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of `insert_on_conflict(…, rows=len(rows))`: one dict, binds suffixed by row."""
    return {f"{name}_{index}": value for index, row in enumerate(rows) for name, value in row.items()}
