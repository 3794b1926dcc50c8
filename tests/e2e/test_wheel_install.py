"""The built wheel, installed into a fresh virtual environment, migrates and checks a fresh database.

The wheel is built from a copy of the source (the checkout stays clean) without build isolation, and
installed without its dependencies; the new environment then reads the project environment's
site-packages through a path in a `.pth` file (no download needed). A path line adds the directory
only, so the project's editable install of staybook stays inactive there: the staybook that runs is
the wheel's, which the test asserts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import uuid
import zipfile
from pathlib import Path

import psycopg
import pytest

from staybook import migrate
from staybook.kernel.settings import Settings
from tests.conftest import PG_ADMIN_URL, need

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def run(*command: str | Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("source")
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
        "-w", dist, source)
    (built,) = dist.glob("staybook-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """The `bin` directory of a fresh virtual environment with the wheel installed."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel)
    own_site = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (own_site / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


@pytest.fixture
def fresh_database():
    need("PostgreSQL", PG_ADMIN_URL, 5432)
    name = f"package_wheel_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_wheel_holds_every_file_of_the_package(wheel):
    tracked = run("git", "-C", ROOT, "ls-files", "src/staybook").stdout.split()
    expected = {path.removeprefix("src/") for path in tracked}
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if not name.startswith("staybook-")}
    assert expected - shipped == set(), "tracked files missing from the wheel"
    assert "staybook/migrations/env.py" in shipped


def test_installed_wheel_migrates_and_checks_a_fresh_database(installed, fresh_database, tmp_path):
    database_url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{fresh_database}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STAYBOOK_", "PYTHON"))}
    env["STAYBOOK_DATABASE_URL"] = database_url

    locate = "import staybook.migrate as m; print(m.migrations_dir())"
    where = run(installed / "python", "-c", locate, cwd=tmp_path, env=env)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), "staybook did not run from the wheel"

    run(installed / "staybook", "migrate", cwd=tmp_path, env=env)
    run(installed / "staybook", "check", cwd=tmp_path, env=env)

    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{fresh_database}") as conn:
        applied = {row[0] for row in conn.execute("SELECT version_num FROM alembic_version")}
    assert applied == migrate.current_heads(Settings(database_url=database_url, environment="test"))
