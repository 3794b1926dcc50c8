"""Alembic environment: one history for every context, on SQLite and PostgreSQL.

Each context keeps its own branch (branch label = context name) rooted at the
kernel's first revision, so contexts add tables without serialising on one
chain; `staybook migrate` upgrades all heads. Cross-branch order, where a
context needs another's tables, is declared with `depends_on`.
"""

from __future__ import annotations

import asyncio
import importlib

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from staybook.app import CONTEXTS
from staybook.kernel.orm import Base
from staybook.kernel.settings import Settings

for name in CONTEXTS:
    try:
        importlib.import_module(f"staybook.{name}.models")
    except ModuleNotFoundError:
        pass
import staybook.kernel.models  # noqa: E402,F401

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    return config.attributes.get("database_url") or Settings().database_url


def run_offline() -> None:
    url = database_url()
    context.configure(
        url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=url.startswith("sqlite")
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online_sqlite(url: str) -> None:
    """SQLite through the standard library's driver: the migrations are synchronous anyway, and
    aiosqlite's thread, after a failed open, reports to an event loop already closed (a traceback
    printed after the command's own error)."""
    engine = create_engine(url.replace("+aiosqlite", ""))
    try:
        with engine.connect() as connection:
            _run_sync(connection)
            connection.commit()
    finally:
        engine.dispose()


async def run_online() -> None:
    engine = create_async_engine(database_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_sync)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    run_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_sync(connection)
    elif database_url().startswith("sqlite"):
        run_online_sqlite(database_url())
    else:
        asyncio.run(run_online())
