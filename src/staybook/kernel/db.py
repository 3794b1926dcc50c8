"""Database engine and the unit of work.

One ORM layer, two engines: SQLite (WAL, the demo) and PostgreSQL (production).
Both run the same Alembic history.

Hot paths (a booking's hold and payment) write with `Sql` statements: SQL text valid on
both engines, built once at import. On PostgreSQL the unit of work runs them on its own
asyncpg connection as prepared statements (about 50 µs of client CPU per round trip,
against about 200 µs for a SQLAlchemy Core execute plus the building of the statement);
on SQLite they go through SQLAlchemy with the same text and types. Both paths share the
transaction of the unit of work's session, so Core, ORM and `Sql` writes commit together.
"""

from __future__ import annotations

import asyncio
import functools
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
import structlog
from sqlalchemy import JSON, Column, Table, TextClause, bindparam, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.types import NullType, TypeEngine
from sqlalchemy.util import greenlet_spawn

from staybook.kernel import metrics
from staybook.kernel.crypto import Sealer
from staybook.kernel.models import OutboxMessage

log = structlog.get_logger("staybook.db")

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
    connect_args: dict[str, Any] = {"server_settings": {"application_name": settings.service_name}}
    if not settings.database_prepared_statements:
        connect_args.update(
            # asyncpg's own cache off: the driver's statements (the hot paths) go out unnamed.
            statement_cache_size=0,
            # SQLAlchemy's cache off, and the statements it still prepares by name get names no
            # other client's connection uses: a server connection another client left them on
            # would otherwise refuse them as already existing.
            prepared_statement_cache_size=0,
            prepared_statement_name_func=_unique_statement_name,
        )
    return create_async_engine(
        settings.database_url,
        echo=settings.database_echo,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
        pool_pre_ping=settings.database_pool_pre_ping,
        pool_recycle=settings.database_pool_recycle_seconds,
        poolclass=ObservedPool,
        connect_args=connect_args,
    )


def _unique_statement_name() -> str:
    return f"__staybook_{uuid.uuid4().hex}__"


class ObservedPool(AsyncAdaptedQueuePool):
    """The asyncio queue pool, counting the requests that find it exhausted and wait for a
    connection (`staybook_db_pool_waiting`, the alert on a starved pool)."""

    def _do_get(self):  # type: ignore[override]
        exhausted = self._pool.qsize() == 0 and self._max_overflow > -1 and self._overflow >= self._max_overflow
        if not exhausted:
            return super()._do_get()
        metrics.DB_POOL_WAITING.inc()
        try:
            return super()._do_get()
        finally:
            metrics.DB_POOL_WAITING.dec()


def _observe_pool(engine: AsyncEngine, settings: Settings) -> None:
    """Connections in use and idle, set from the pool at each checkout and checkin."""
    if settings.is_sqlite:
        return
    pool = engine.sync_engine.pool
    metrics.DB_POOL_SIZE.set(settings.database_pool_size + settings.database_max_overflow)
    in_use, idle = metrics.DB_POOL_CONNECTIONS.labels("in_use"), metrics.DB_POOL_CONNECTIONS.labels("idle")

    def observe(*_: Any) -> None:
        in_use.set(pool.checkedout())
        idle.set(pool.checkedin())

    event.listen(engine.sync_engine, "checkout", observe)
    event.listen(engine.sync_engine, "checkin", observe)


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


class Record(dict):
    """A row of a `Sql` statement: by name (`row["status"]`) or attribute (`row.status`)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


_ROW_LOCK = re.compile(r"\s+FOR UPDATE(\s+OF\s+\w+)?(\s+SKIP LOCKED)?")
_BIND = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def _json_text(value: Any) -> Any:
    # SQLAlchemy's asyncpg codecs for json/jsonb take JSON text (and decode results to objects).
    return None if value is None else orjson.dumps(value, default=str).decode()


def _is_json(type_: TypeEngine) -> bool:
    return isinstance(type_, JSON) or any(isinstance(v, JSON) for v in getattr(type_, "_variant_mapping", {}).values())


class Sql:
    """A statement written once, valid on PostgreSQL and SQLite, with `:name` binds.

    `types` gives each bind its column type (binds named after a column of `table` take its
    type); `returns` types the result columns. Build it at import, run it with
    `UnitOfWork.fetch/fetchrow/execute`. PostgreSQL infers each bind's type from where it
    stands (a bind alone in the select list would be text), and SQLite gets the statement
    without its `FOR UPDATE` clauses.
    """

    __slots__ = ("clause", "postgres", "names", "encoders")

    def __init__(
        self,
        sql: str,
        *,
        table: Table | None = None,
        types: Mapping[str, TypeEngine] | None = None,
        returns: Iterable[Column] = (),
    ) -> None:
        names: list[str] = []
        for name in _BIND.findall(sql):
            if name not in names:
                names.append(name)

        def type_of(name: str) -> TypeEngine:
            if types and name in types:
                return types[name]
            if table is not None and name in table.c:
                return table.c[name].type
            return NullType()

        bind_types = [type_of(name) for name in names]
        # SQLite has no row locks (its writer holds the database from BEGIN IMMEDIATE on).
        clause = text(_ROW_LOCK.sub("", sql)).bindparams(
            *(bindparam(n, type_=t) for n, t in zip(names, bind_types, strict=True))
        )
        returns = list(returns)
        self.clause = clause.columns(*returns) if returns else clause
        self.names = tuple(names)
        self.postgres = _BIND.sub(lambda match: f"${names.index(match.group(1)) + 1}", sql)
        self.encoders = tuple(_json_text if _is_json(t) else None for t in bind_types)

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        return [
            params[name] if encode is None else encode(params[name])
            for name, encode in zip(self.names, self.encoders, strict=True)
        ]


def _count(status: str) -> int:
    # asyncpg answers a command with its tag: "UPDATE 3", "INSERT 0 1", "DELETE 0".
    tail = status.rpartition(" ")[2]
    return int(tail) if tail.isdigit() else 0


class UnitOfWork:
    """One transaction: the changes of one use case plus the events it emits.

    Events go into the outbox table in the same transaction, so a change and its
    announcement commit or roll back together. After a commit the relay is woken
    so events reach the bus without waiting for the next poll.
    """

    def __init__(self, session: AsyncSession | None, on_commit: Callable[[], None] | None = None) -> None:
        self._session = session
        self._events: list[Event] = []
        self._on_commit = on_commit
        self.context: dict[str, Any] = {}
        self._postgres = session is not None and session.bind.dialect.name == "postgresql"
        self._driver: Any = None
        self._deferred: list[tuple[Sql, Mapping[str, Any]]] = []
        self.sealer: Sealer | None = None  # set by the Database that opens this unit of work

    @property
    def session(self) -> AsyncSession:
        """The SQLAlchemy session of this unit of work (ORM and Core statements)."""
        if self._session is None:
            raise RuntimeError("this unit of work runs on the driver only (Database.transaction): Sql statements")
        return self._session

    async def _driver_connection(self) -> Any:
        """The asyncpg connection of this unit of work's session, inside its transaction."""
        if self._driver is None:
            raw = await (await self.session.connection()).get_raw_connection()
            adapted = raw.dbapi_connection
            # SQLAlchemy's asyncpg adapter sends BEGIN lazily, before its own first statement:
            # start it here so the driver's statements run inside the session's transaction.
            if not adapted._started:
                await adapted._start_transaction()
            self._driver = raw.driver_connection
        return self._driver

    async def fetch(self, statement: Sql, params: Mapping[str, Any] | None = None) -> list[Record]:
        """Runs `statement` in this unit of work's transaction; its rows."""
        params = params or {}
        if self._postgres:
            driver = await self._driver_connection()
            return [Record(row.items()) for row in await driver.fetch(statement.postgres, *statement.arguments(params))]
        result = await self.session.execute(statement.clause, params)
        return [Record(row._mapping) for row in result] if result.returns_rows else []

    async def fetchrow(self, statement: Sql, params: Mapping[str, Any] | None = None) -> Record | None:
        """The first row of `statement`, or None."""
        params = params or {}
        if self._postgres:
            driver = await self._driver_connection()
            row = await driver.fetchrow(statement.postgres, *statement.arguments(params))
            return None if row is None else Record(row.items())
        row = (await self.session.execute(statement.clause, params)).first()
        return None if row is None else Record(row._mapping)

    async def execute(self, statement: Sql, params: Mapping[str, Any] | None = None) -> int:
        """Runs a statement that returns no rows; the number of rows it changed."""
        params = params or {}
        if self._postgres:
            driver = await self._driver_connection()
            return _count(await driver.execute(statement.postgres, *statement.arguments(params)))
        return (await self.session.execute(statement.clause, params)).rowcount

    def emit(self, event: Event) -> None:
        self._events.append(event)

    def defer(self, statement: Sql, params: Mapping[str, Any]) -> None:
        """Queues a write whose result the use case does not need (an insert, an unguarded update):
        it is sent at commit together with the other deferred writes and the outbox rows, on
        PostgreSQL as ONE statement (each write a data-modifying CTE). The writes of one such
        statement run on one snapshot and cannot see each other's rows: independent writes only."""
        self._deferred.append((statement, params))

    async def flush(self) -> None:
        """Sends the deferred writes and the events' outbox rows."""
        writes = [*self._deferred, *((_OUTBOX_INSERT, event.outbox_row()) for event in self._events)]
        self._deferred, self._events = [], []
        if not writes:
            return
        if self._postgres:
            driver = await self._driver_connection()
            for chunk in _chunks_for_one_statement(writes):
                statement = _combined(tuple(statement for statement, _ in chunk))
                arguments = [argument for written, params in chunk for argument in written.arguments(params)]
                await driver.execute(statement, *arguments)
            return
        for statement, params in writes:
            await self.session.execute(statement.clause, params)

    async def commit(self) -> None:
        had_events = bool(self._events)
        await self.flush()
        await self.session.commit()
        if had_events and self._on_commit:
            self._on_commit()

    async def rollback(self) -> None:
        self._events.clear()
        self._deferred = []
        await self.session.rollback()


class _DriverUnitOfWork(UnitOfWork):
    """A unit of work on a pooled connection's driver alone (PostgreSQL): `Sql` statements, deferred
    writes and events, without a SQLAlchemy session (see `Database.transaction`)."""

    def __init__(self, driver: Any, on_commit: Callable[[], None] | None, *, autocommit: bool) -> None:
        super().__init__(None, on_commit)
        self._postgres = True
        self._driver = driver
        self._transaction = None if autocommit else driver.transaction()
        self._open = False
        self._begin_failed = False

    async def _driver_connection(self) -> Any:
        return self._driver

    @property
    def ended_cleanly(self) -> bool:
        """True when the connection is out of any transaction, on the server and in asyncpg's own
        bookkeeping (a BEGIN that failed or was cancelled leaves the latter set): safe to pool."""
        return not (self._begin_failed or self._open or self._driver.is_in_transaction())

    async def begin(self) -> None:
        if self._transaction is not None:
            try:
                await self._transaction.start()
            except BaseException:
                self._begin_failed = True
                raise
            self._open = True

    async def commit(self) -> None:
        had_events = bool(self._events)
        await self.flush()
        if self._open:
            self._open = False
            await self._transaction.commit()
        if had_events and self._on_commit:
            self._on_commit()

    async def rollback(self) -> None:
        self._events.clear()
        self._deferred = []
        if self._open:
            self._open = False
            await self._transaction.rollback()


def insert_sql(table: Table, columns: Iterable[str]) -> str:
    """`INSERT INTO table (a, b) VALUES (:a, :b)`: the start of a `Sql` insert, binds named after columns."""
    columns = tuple(columns)
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({', '.join(':' + c for c in columns)})"


_OUTBOX_COLUMNS = ("id", "subject", "event_type", "payload", "headers", "created_at", "published_at", "attempts")
_OUTBOX_INSERT = Sql(
    insert_sql(OutboxMessage.__table__, _OUTBOX_COLUMNS),
    table=OutboxMessage.__table__,
)


def _is_disconnect(error: BaseException) -> bool:
    return isinstance(error, (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, ConnectionError))


def _unavailable(error: BaseException) -> OperationalError:
    # The API answers OperationalError with 503 and Retry-After (kernel.errors), as for the session path.
    return OperationalError("driver statement", None, error)


_PLACEHOLDER = re.compile(r"\$(\d+)")
# PostgreSQL's protocol carries at most 32,767 parameters a statement; few writes a statement also
# keeps the number of distinct combined statements (each one prepared per connection) small.
_MAX_PARAMETERS, _MAX_WRITES = 30_000, 64


def _chunks_for_one_statement(writes: list[tuple[Sql, Mapping[str, Any]]]):
    chunk: list[tuple[Sql, Mapping[str, Any]]] = []
    parameters = 0
    for write in writes:
        size = len(write[0].names)
        if chunk and (parameters + size > _MAX_PARAMETERS or len(chunk) == _MAX_WRITES):
            yield chunk
            chunk, parameters = [], 0
        chunk.append(write)
        parameters += size
    if chunk:
        yield chunk


@functools.lru_cache(maxsize=256)
def _combined(statements: tuple[Sql, ...]) -> str:
    """Several writes as one PostgreSQL statement: `WITH w1 AS (first), … last`, binds renumbered."""
    parts, offset = [], 0
    for statement in statements:
        parts.append(
            _PLACEHOLDER.sub(lambda match, shift=offset: f"${int(match.group(1)) + shift}", statement.postgres)
        )
        offset += len(statement.names)
    if len(parts) == 1:
        return parts[0]
    return "WITH " + ", ".join(f"w{i} AS ({part})" for i, part in enumerate(parts[:-1], 1)) + " " + parts[-1]


# On a standby: 0 when replay has caught up with what was received, else the age of the last
# replayed transaction (a quiet primary sends nothing to replay, so that age alone would grow).
REPLICA_LAG_SQL = """
SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) END
"""


# On a standby: whether replay has passed the primary's position `target` (an LSN).
REPLAYED_SQL = "SELECT pg_last_wal_replay_lsn() >= CAST(:target AS pg_lsn)"


class Database:
    """Engine plus session factory, created in the app lifespan (never at import)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_engine(settings)
        # Personal fields are sealed before they are written (kernel/crypto.py).
        self.sealer = Sealer(settings)
        _observe_pool(self.engine, settings)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, autoflush=False)
        self.replica_engine: AsyncEngine | None = None
        self.replica_sessions = self.sessions
        if settings.database_replica_url:
            replica = settings.model_copy(update={"database_url": settings.database_replica_url})
            self.replica_engine = create_engine(replica)
            self.replica_sessions = async_sessionmaker(self.replica_engine, expire_on_commit=False, autoflush=False)
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
    async def unit_of_work(self) -> AsyncIterator[UnitOfWork]:
        """Yields a UnitOfWork; commits when the block ends cleanly, rolls back on error."""
        async with self.sessions() as session:
            uow = UnitOfWork(session, self._notify)
            uow.sealer = self.sealer
            try:
                yield uow
                await uow.commit()
            except BaseException:
                await uow.rollback()
                raise

    @asynccontextmanager
    async def transaction(self, *, autocommit: bool = False) -> AsyncIterator[UnitOfWork]:
        """A unit of work for `Sql` statements only (no `session`): the hot paths' transactions.

        On PostgreSQL it runs on a pooled connection's driver with no SQLAlchemy session in
        between (a session's checkout, begin, commit and close cost about 0.25 ms of CPU per
        transaction, more than the statements of a short one). `autocommit=True` runs each
        statement in a transaction of its own, with no BEGIN/COMMIT round trips: for a
        single-statement write, or reads that need no common snapshot. Elsewhere (SQLite) it is
        `unit_of_work()`, whose transaction `autocommit` does not change.
        """
        if self.dialect != "postgresql":
            async with self.unit_of_work() as uow:
                yield uow
            return
        pooled = await self.engine.raw_connection()
        broken = False
        uow = _DriverUnitOfWork(pooled.driver_connection, self._notify, autocommit=autocommit)
        uow.sealer = self.sealer
        try:
            try:
                await uow.begin()
                yield uow
                await uow.commit()
            except BaseException as error:
                broken = _is_disconnect(error)
                if not broken:
                    try:
                        await uow.rollback()
                    except BaseException as failed:
                        broken = True
                        if isinstance(error, asyncio.CancelledError):
                            raise error from failed  # a cancellation stays a cancellation
                        if not isinstance(failed, Exception):
                            raise
                        raise _unavailable(failed) from error
                if broken and not isinstance(error, asyncio.CancelledError):
                    raise _unavailable(error) from error
                raise
        finally:
            # Back to the pool only when it left every transaction cleanly (a cancelled BEGIN,
            # COMMIT or ROLLBACK leaves it unknown): else out of it. SQLAlchemy's pool may close
            # a connection on return, which needs its greenlet bridge.
            broken = broken or not uow.ended_cleanly
            await greenlet_spawn(pooled.invalidate if broken else pooled.close)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A read-only style session for queries; nothing is committed."""
        async with self.sessions() as session:
            yield session

    @asynccontextmanager
    async def replica_session(self) -> AsyncIterator[AsyncSession]:
        """A read-only session on the standby when one is configured (else the primary), for reads
        that may be a moment behind: what a host lists, what an export gathers. Never for a read
        that decides a write."""
        async with self.replica_sessions() as session:
            yield session

    async def caught_up_reader(self, timeout: float = 10.0) -> AsyncEngine:
        """The engine for a long read that rebuilds something from the truth (the search index):
        the standby once it has replayed everything the primary had committed when this was
        called, so the rebuild misses no change whose event came before it; the primary when
        there is no standby, or it is still behind after `timeout` seconds."""
        if self.replica_engine is None:
            return self.engine
        async with self.engine.connect() as conn:
            target = await conn.scalar(text("SELECT pg_current_wal_lsn()"))
        deadline = asyncio.get_running_loop().time() + timeout
        async with self.replica_engine.connect() as conn:
            while True:
                replayed = await conn.scalar(text(REPLAYED_SQL), {"target": target})
                await conn.rollback()
                if replayed:
                    return self.replica_engine
                if asyncio.get_running_loop().time() >= deadline:
                    log.warning("standby still behind; reading the primary", context={"timeout": timeout})
                    return self.engine
                await asyncio.sleep(0.05)

    async def replica_lag_seconds(self) -> float | None:
        """How far the standby's replay is behind (0 when it has replayed all it received); None
        without a standby."""
        if self.replica_engine is None:
            return None
        async with self.replica_engine.connect() as conn:
            lag = await conn.scalar(text(REPLICA_LAG_SQL))
        metrics.DB_REPLICA_LAG.set(float(lag or 0.0))
        return float(lag or 0.0)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.replica_engine is not None:
            await self.replica_engine.dispose()


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
