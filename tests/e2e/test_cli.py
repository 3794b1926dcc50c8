"""The `staybook` command as an operator meets it: its version, one line per failure, and a check
that says when the schema is behind."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import uuid
from importlib.metadata import version
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory

from staybook import migrate
from staybook.kernel.settings import Settings
from tests.conftest import PG_ADMIN_URL, need
from tests.e2e.demo_process import STAYBOOK

pytestmark = pytest.mark.e2e

# This suite's own ports (nothing listens on them).
PORTS = range(17100, 17200)


def staybook(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("STAYBOOK_")}
    clean["STAYBOOK_CATALOG__MEDIA_DIR"] = str(cwd / "media")
    return subprocess.run(
        [STAYBOOK, *args], cwd=cwd, env=clean | env, capture_output=True, text=True, timeout=120
    )


@contextlib.contextmanager
def closed_port():
    """A port bound and not listening: a connection to it is refused, and nobody else can take it."""
    for port in PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            yield port
            return
    pytest.skip("no free port in 17100-17199")


def test_version_is_the_installed_distributions():
    result = subprocess.run([STAYBOOK, "--version"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"staybook {version('staybook')}"


def test_an_unreachable_database_is_one_line_and_exit_1_with_the_traceback_under_debug(tmp_path):
    with closed_port() as port:
        url = f"postgresql://postgres@127.0.0.1:{port}/package_nowhere"
        failed = staybook("migrate", cwd=tmp_path, STAYBOOK_DATABASE_URL=url)
        debugged = staybook("--debug", "migrate", cwd=tmp_path, STAYBOOK_DATABASE_URL=url)
    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("error: cannot connect to the database")
    assert f"127.0.0.1:{port}/package_nowhere" in line and "--debug" in line
    assert debugged.returncode == 1
    assert "Traceback (most recent call last)" in debugged.stderr
    assert "ConnectionRefusedError" in debugged.stderr


def test_a_bad_setting_names_its_variable_in_one_line(tmp_path):
    failed = staybook("check", cwd=tmp_path, STAYBOOK_HTTP_PORT="eighty", STAYBOOK_DATABASE_URL="sqlite:///x.db")
    assert failed.returncode == 2
    (line,) = failed.stderr.strip().splitlines()
    assert line.startswith("error: invalid setting STAYBOOK_HTTP_PORT:") and "'eighty'" in line


def test_a_database_file_in_a_missing_folder_is_one_line(tmp_path):
    path = tmp_path / "no-such-folder" / "staybook.db"
    failed = staybook("migrate", cwd=tmp_path, STAYBOOK_DATABASE_URL=f"sqlite:///{path}")
    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()
    assert str(path) in line and "unable to open database file" in line


@pytest.fixture
def fresh_database():
    need("PostgreSQL", PG_ADMIN_URL, 5432)
    name = f"package_check_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield Settings(database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", environment="test")
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def a_branch_with_two_revisions(settings: Settings) -> tuple[str, str, str]:
    """(branch label, its head, the revision before it) of a context whose branch has two revisions or more."""
    script = ScriptDirectory.from_config(migrate.alembic_config(settings))
    for head in sorted(script.get_heads()):
        revision = script.get_revision(head)
        branch = min(revision.branch_labels - {"kernel"}, default=None)
        if branch and revision.down_revision and revision.down_revision != "0001_kernel":
            return branch, head, revision.down_revision
    pytest.skip("no context has two revisions")


def test_check_fails_naming_the_branch_behind_and_passes_at_the_heads(fresh_database, tmp_path):
    url = fresh_database.database_url
    never = staybook("check", cwd=tmp_path, STAYBOOK_DATABASE_URL=url)
    assert never.returncode == 1
    assert "FAILED schema at the latest migrations" in never.stderr and "never migrated" in never.stderr

    branch, head, older = a_branch_with_two_revisions(fresh_database)
    migrate.upgrade(fresh_database)
    migrate.downgrade(fresh_database, older)
    behind = staybook("check", cwd=tmp_path, STAYBOOK_DATABASE_URL=url)
    assert behind.returncode == 1
    assert f"{branch} at {older}, head {head}" in behind.stderr
    assert "staybook migrate" in behind.stderr

    migrate.upgrade(fresh_database)
    at_heads = staybook("check", cwd=tmp_path, STAYBOOK_DATABASE_URL=url)
    assert at_heads.returncode == 0, at_heads.stderr
    assert "ok     schema at the latest migrations" in at_heads.stdout
