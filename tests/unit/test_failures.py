"""What `staybook` prints for a failed command: one line naming what failed (kernel/failures.py)."""

from __future__ import annotations

import sqlite3

from pydantic import ValidationError

from staybook.kernel.failures import describe
from staybook.kernel.settings import Settings


def raised(function) -> BaseException:
    try:
        function()
    except BaseException as error:
        return error
    raise AssertionError("nothing raised")


def test_invalid_settings_name_their_environment_variables_and_values():
    error = raised(lambda: Settings(http_port="eighty", booking={"hold_ttl_seconds": "soon"}))
    assert isinstance(error, ValidationError)
    line = describe(error)
    assert "\n" not in line
    assert line.startswith("invalid setting ")
    assert "STAYBOOK_HTTP_PORT: " in line and "(got 'eighty')" in line
    assert "STAYBOOK_BOOKING__HOLD_TTL_SECONDS: " in line and "(got 'soon')" in line


def test_a_missing_file_is_its_reason_and_its_name(tmp_path):
    missing = tmp_path / "nope.json"
    assert describe(raised(missing.read_text)) == f"No such file or directory: {missing}"


def test_a_database_driver_error_is_the_databases_with_its_root_cause(monkeypatch, tmp_path):
    monkeypatch.setenv("STAYBOOK_DATABASE_URL", "postgresql://staybook:hunter2@db.internal:5432/staybook")

    def connect() -> None:
        try:
            sqlite3.connect(tmp_path / "missing" / "x.db")
        except sqlite3.OperationalError as error:
            raise RuntimeError("wrapped by a caller\nwith more lines") from error

    line = describe(raised(connect))
    assert line == "database postgresql+asyncpg://staybook:***@db.internal:5432/staybook: unable to open database file"


def test_anything_else_is_its_first_line():
    assert describe(ValueError("first\nsecond")) == "first"
    assert describe(KeyError()) == "KeyError"
