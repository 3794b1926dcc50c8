"""Payment statuses: one table, the CHECK and the docs derived from it; webhook signatures (no I/O)."""

from __future__ import annotations

from pathlib import Path

import pytest

from staybook.payments.models import PAYMENT_TRANSITIONS, Payment, PaymentStatus
from staybook.payments.provider import InvalidSignature, sign, verify

DOCS = Path(__file__).parents[2] / "docs" / "payments.md"


def test_the_check_constraint_is_the_enum():
    checks = {
        c.name: str(c.sqltext) for c in Payment.__table__.constraints if c.name in ("status", "ck_payments_status")
    }
    assert list(checks.values()) == [PaymentStatus.check_constraint("status")]
    assert PaymentStatus.check_constraint("status") == (
        "status IN ('pending', 'authorised', 'captured', 'failed', 'voided', 'refunded')"
    )


def test_the_docs_show_the_table():
    assert PAYMENT_TRANSITIONS.markdown() in DOCS.read_text()


def test_a_payment_moves_forward_only():
    assert PAYMENT_TRANSITIONS.sources(PaymentStatus.CAPTURED) == (PaymentStatus.PENDING, PaymentStatus.AUTHORISED)
    assert PAYMENT_TRANSITIONS.terminal == {PaymentStatus.FAILED, PaymentStatus.VOIDED}
    assert not PAYMENT_TRANSITIONS.can("captured", "authorised")
    assert PAYMENT_TRANSITIONS.can("refunded", "refunded")  # a further partial refund


def test_signature_window_and_rolled_secrets():
    body = b'{"id":"evt_1"}'
    header = sign(b"new", 1_000, body)
    verify(b"new", header, body, tolerance_seconds=300, now=1_200)
    old = sign(b"old", 1_000, body).split(",")[1]
    verify(b"old", f"{header},{old}", body, tolerance_seconds=300, now=1_000)  # either v1 of a roll
    for bad in (None, "", "v1=abc", "t=x,v1=abc", "t=1000", header.replace("v1=", "v1=0")):
        with pytest.raises(InvalidSignature):
            verify(b"new", bad, body, tolerance_seconds=300, now=1_000)
    with pytest.raises(InvalidSignature):
        verify(b"new", header, body, tolerance_seconds=300, now=1_301)
    with pytest.raises(InvalidSignature):
        verify(b"new", header, body + b" ", tolerance_seconds=300, now=1_000)
