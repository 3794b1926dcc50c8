"""The statements a booking costs: hold and pay+confirm each stay within a budget of SQL statements
and transactions (docs/booking-saga.md, "Performance"). A change that adds a read, a flush or a
transaction to the hot path fails here, and the statements are printed (`pytest -s`) so the budget
can be read, not guessed. They are counted on the wire: the hot path runs most of its statements on
the driver (kernel.db.Sql), the rest through SQLAlchemy."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import event

from tests.bookings import hold_body, seed_room_type
from tests.conftest import bearer

# hold, one transaction: claim the key; room type; the hold; then at commit ONE statement with the
# booking, saga and history rows, the answer and the outbox rows (UnitOfWork.defer).
HOLD_BUDGET = 4
HOLD_TRANSACTIONS = 1
# pay, one transaction to open the payment: claim, booking+saga (locked), payment, saga step, and at
# commit the booking's payment id; the provider's ledger (sandbox, 2 autocommitted statements); one
# transaction to confirm: booking, payment x2, nights, saga step, and at commit one statement with the
# history row, the answer and the 4 outbox rows.
PAY_BUDGET = 13
PAY_TRANSACTIONS = 2

_TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK")


@pytest.fixture
def instant(pg_settings):
    return pg_settings.model_copy(
        update={"payments": pg_settings.payments.model_copy(update={"sandbox_instant": True})}
    )


class Wire:
    """Every statement sent to PostgreSQL: SQLAlchemy's (cursor events) and the driver's own
    (asyncpg's query logger, which also sees BEGIN and COMMIT)."""

    def __init__(self, engine) -> None:
        self.engine = engine.sync_engine
        self.sent: list[str] = []
        self.through_sqlalchemy = 0
        self._logged: set[int] = set()

    def _cursor(self, _conn, _cursor, statement, *_args) -> None:
        self.through_sqlalchemy += 1
        self.sent.append(" ".join(statement.split()))

    def _driver(self, record) -> None:
        self.sent.append(" ".join(record.query.split()))

    def _checkout(self, _dbapi_connection, record, _proxy) -> None:
        driver = record.driver_connection
        if id(driver) not in self._logged:
            self._logged.add(id(driver))
            driver.add_query_logger(self._driver)

    def __enter__(self) -> Wire:
        event.listen(self.engine, "before_cursor_execute", self._cursor)
        event.listen(self.engine, "checkout", self._checkout)
        return self

    def __exit__(self, *_exc) -> None:
        event.remove(self.engine, "before_cursor_execute", self._cursor)
        event.remove(self.engine, "checkout", self._checkout)

    async def take(self) -> tuple[list[str], int]:
        """(statements, transactions) sent since the last call."""
        await asyncio.sleep(0.05)  # the driver's loggers run on the next loop iterations
        sent, self.sent = self.sent, []
        statements = [s for s in sent if not s.upper().startswith(_TRANSACTION_CONTROL)]
        return statements, sum(s.upper().startswith("BEGIN") for s in sent)


async def test_a_booking_costs_a_bounded_number_of_statements(instant, client_for):
    headers = bearer(instant, "guest")
    async with client_for(instant) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=5)
        # The token's first request reads the user's token version (revocation), cached afterwards:
        # a booking is counted as a signed-in guest makes it, not as a first request.
        await client.get("/api/v1/me/bookings", headers=headers)
        with Wire(runtime.db.engine) as wire:
            held = await client.post(
                "/api/v1/bookings",
                json=hold_body(room["room_type_id"]),
                headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert held.status_code == 201, held.text
            hold_statements, hold_transactions = await wire.take()
            paid = await client.post(
                f"/api/v1/bookings/{held.json()['id']}/payment",
                json={"payment_method": "tok_success"},
                headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
            )
            assert paid.status_code == 200, paid.text
            pay_statements, pay_transactions = await wire.take()
    print("\n".join(s[:100] for s in ["hold:", *hold_statements, "pay:", *pay_statements]))
    assert len(hold_statements) <= HOLD_BUDGET, hold_statements
    assert hold_transactions <= HOLD_TRANSACTIONS
    assert len(pay_statements) <= PAY_BUDGET, pay_statements
    assert pay_transactions <= PAY_TRANSACTIONS
    # Every state change is a write: no statement reads back a row the flow itself just wrote.
    assert sum(s.startswith("SELECT") and "FROM bookings" in s for s in pay_statements) == 1
    # The whole flow runs prepared statements on the driver (kernel.db.Sql), none through SQLAlchemy.
    assert wire.through_sqlalchemy == 0


async def test_a_second_booking_compiles_no_statement(instant, client_for):
    """Every statement of the hot path that goes through SQLAlchemy comes from its compiled cache once
    warm: a statement built so that it has no cache key (dialect upserts, for one) is compiled afresh
    on every request, which costs more client CPU than its round trip."""
    headers = bearer(instant, "guest")
    async with client_for(instant) as client:
        runtime = client.app.state.runtime
        room = await seed_room_type(runtime, total=5)
        compiled: list[str] = []

        def note(_conn, _cursor, statement, _parameters, context, _executemany) -> None:
            if context is not None and context.cache_hit != context.dialect.CACHE_HIT:
                compiled.append(f"{context.cache_hit.name}: {' '.join(statement.split())[:100]}")

        for attempt in range(2):
            if attempt == 1:
                event.listen(runtime.db.engine.sync_engine, "before_cursor_execute", note)
            try:
                held = await client.post(
                    "/api/v1/bookings",
                    json=hold_body(room["room_type_id"]),
                    headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
                )
                assert held.status_code == 201, held.text
                paid = await client.post(
                    f"/api/v1/bookings/{held.json()['id']}/payment",
                    json={"payment_method": "tok_success"},
                    headers=headers | {"Idempotency-Key": uuid.uuid4().hex},
                )
                assert paid.status_code == 200, paid.text
            finally:
                if attempt == 1:
                    event.remove(runtime.db.engine.sync_engine, "before_cursor_execute", note)
    assert compiled == [], compiled
