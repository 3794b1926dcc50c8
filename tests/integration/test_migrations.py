"""The one Alembic history upgrades and downgrades on SQLite and PostgreSQL, and matches the models."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from staybook import migrate
from staybook.app import CONTEXTS
from staybook.kernel.orm import Base
from staybook.kernel.settings import Settings
from tests.conftest import PG_ADMIN_URL, need

for _context in CONTEXTS:
    try:
        __import__(f"staybook.{_context}.models")
    except ModuleNotFoundError:
        pass


@pytest.fixture(params=["sqlite", "postgres"])
def empty_database(request, tmp_path):
    if request.param == "sqlite":
        yield Settings(database_url=f"sqlite:///{tmp_path / 'migrations.db'}", environment="test")
        return
    need("PostgreSQL", PG_ADMIN_URL, 5432)
    name = f"staybook_migrations_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield Settings(database_url=f"postgresql://postgres@127.0.0.1:5432/{name}", environment="test")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def tables(settings: Settings) -> set[str]:
    engine = create_engine(settings.sync_database_url)
    try:
        return set(inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def schema_drift(settings: Settings) -> list:
    engine = create_engine(settings.sync_database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": False})
            return compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()


def test_upgrade_downgrade_upgrade(empty_database):
    migrate.upgrade(empty_database)
    created = tables(empty_database)
    assert set(Base.metadata.tables) <= created
    migrate.downgrade(empty_database, "base")
    assert tables(empty_database) == set()
    migrate.upgrade(empty_database)
    assert tables(empty_database) == created


def test_migrations_match_the_models(empty_database):
    migrate.upgrade(empty_database)
    assert schema_drift(empty_database) == []
