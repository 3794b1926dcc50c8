"""Bulk writes for seeding and rebuilding: asyncpg's binary COPY on PostgreSQL (an order of
magnitude faster than INSERTs), one executemany on SQLite. Every seeder writes through these."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import orjson
from sqlalchemy import JSON, Table, insert
from sqlalchemy.ext.asyncio import AsyncSession


async def copy_records(
    session: AsyncSession,
    table: str,
    columns: Sequence[str],
    records: Sequence[tuple],
    *,
    sqlite_row: Callable[[tuple], tuple] | None = None,
) -> None:
    """Writes `records` (tuples in `columns` order) into `table` in the session's transaction.

    On SQLite the rows go to the driver as they are, or through `sqlite_row` (SQLite's own storage
    forms: hex UUIDs, ISO dates, 0/1), which costs a tenth of ORM-level binding per row."""
    if not records:
        return
    connection = await session.connection()
    if session.bind.dialect.name == "postgresql":
        raw = (await connection.get_raw_connection()).driver_connection
        await raw.copy_records_to_table(table, records=list(records), columns=list(columns))
        return
    rows = [sqlite_row(record) for record in records] if sqlite_row is not None else list(records)
    placeholders = ", ".join("?" * len(columns))
    await connection.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)


async def insert_rows(session: AsyncSession, table: Table, rows: list[dict]) -> None:
    """Writes ORM-shaped rows (dicts keyed by column): COPY on PostgreSQL, JSON columns encoded; an
    executemany of the table's INSERT elsewhere (SQLAlchemy binds the types)."""
    if not rows:
        return
    if session.bind.dialect.name != "postgresql":
        await session.execute(insert(table), rows)
        return
    columns = list(rows[0])
    json_columns = {c.name for c in table.columns if isinstance(c.type, JSON)}
    records = [tuple(orjson.dumps(row[c]).decode() if c in json_columns else row[c] for c in columns) for row in rows]
    await copy_records(session, table.name, columns, records)
