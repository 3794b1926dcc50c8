"""The database's CHECK constraints admit exactly the booking's state enums, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError

from staybook.booking.domain import BookingStatus, SagaStep
from staybook.kernel.orm import utcnow

# (table, column, enum). The migrations named the bookings' CHECKs ck_bookings_ck_bookings_*
# (the naming convention applied twice); the constraint is found by what it checks, not by name.
CONSTRAINTS = [("bookings", "status", BookingStatus), ("booking_sagas", "step", SagaStep)]


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request):
    settings = request.getfixturevalue("sqlite_settings" if request.param == "sqlite" else "pg_settings")
    engine = create_engine(settings.sync_database_url)
    yield engine
    engine.dispose()


def check_constraints(connection, table: str) -> list[str]:
    """The table's CHECK constraints as the database keeps them."""
    if connection.dialect.name == "postgresql":
        return list(
            connection.scalars(
                text(
                    "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
                    " WHERE conrelid = :t ::regclass AND contype = 'c'"
                ),
                {"t": table},
            )
        )
    schema = connection.scalar(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = :t"), {"t": table})
    found = []
    for match in re.finditer(r"CHECK \(", schema):
        depth = 0
        for index in range(match.end() - 1, len(schema)):  # up to the parenthesis closing the CHECK's own
            depth += {"(": 1, ")": -1}.get(schema[index], 0)
            if depth == 0:
                found.append(schema[match.start() : index + 1])
                break
    return found


@pytest.mark.parametrize(("table", "column", "states"), CONSTRAINTS)
def test_the_check_lists_exactly_the_enum(engine, table, column, states):
    with engine.connect() as connection:
        definitions = [d for d in check_constraints(connection, table) if re.match(rf"CHECK \(+{column}\b", d)]
    assert len(definitions) == 1, definitions
    assert sorted(re.findall(r"'([^']*)'", definitions[0])) == sorted(states)


def test_the_saga_step_check_admits_each_step_and_refuses_others(engine):
    with engine.connect() as connection:
        for step in SagaStep:
            connection.execute(
                text("INSERT INTO booking_sagas (booking_id, step, attempts, updated_at) VALUES (:id, :step, 0, :at)"),
                {
                    "id": uuid.uuid4().hex if connection.dialect.name == "sqlite" else uuid.uuid4(),
                    "step": str(step),
                    "at": utcnow(),
                },
            )
        with pytest.raises(IntegrityError):
            connection.execute(
                text("UPDATE booking_sagas SET step = 'paid' WHERE step = :step"), {"step": str(SagaStep.HELD)}
            )
        connection.rollback()
