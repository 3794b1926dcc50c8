import asyncio
import io
import json
import logging
import uuid
from datetime import UTC, datetime

import pytest
import structlog

from staybook.kernel.bus import InProcessBus, durable_name, stream_name, subject_matches
from staybook.kernel.events import EventEnvelope
from staybook.kernel.telemetry import configure_logging, parse_traceparent


@pytest.mark.parametrize(
    "pattern, subject, matches",
    [
        ("staybook.booking.>", "staybook.booking.booking.held", True),
        ("staybook.booking.>", "staybook.booking", False),
        ("staybook.*.booking.held", "staybook.booking.booking.held", True),
        ("staybook.catalog.property.*", "staybook.catalog.property.created", True),
        ("staybook.catalog.property.*", "staybook.catalog.room_type.created", False),
        ("staybook.catalog.property.created", "staybook.catalog.property.created.extra", False),
    ],
)
def test_subject_wildcards_follow_nats(pattern, subject, matches):
    assert subject_matches(pattern, subject) is matches


def test_stream_and_durable_names_are_nats_safe():
    assert stream_name("booking") == "STAYBOOK_BOOKING"
    assert stream_name("booking", "t1a2") == "T1A2_BOOKING"
    assert durable_name("search.index", "staybook.inventory.>") == "search_index__inventory_all"


def test_traceparent_parsing():
    assert parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "00f067aa0ba902b7",
    )
    assert parse_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01") is None
    assert parse_traceparent("garbage") is None
    assert parse_traceparent(None) is None


def test_log_lines_have_the_runbook_fields():
    configure_logging("staybook-test", "pod-7", "INFO", json_lines=True)
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream
    structlog.contextvars.bind_contextvars(trace_id="abc", user_id="u1")
    try:
        raise ValueError("card declined")
    except ValueError:
        structlog.get_logger("staybook.test").exception(
            "payment failed", booking_id="b1", context={"attempt": 2}, provider="sandbox"
        )
    structlog.contextvars.clear_contextvars()
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["service"] == "staybook-test" and line["pod"] == "pod-7"
    assert line["level"] == "error" and line["message"] == "payment failed"
    assert line["trace_id"] == "abc" and line["user_id"] == "u1" and line["booking_id"] == "b1"
    assert line["error_type"] == "ValueError" and "card declined" in line["stack_trace"]
    assert line["context"]["attempt"] == 2 and line["context"]["provider"] == "sandbox"
    assert "timestamp" in line


def _envelope(number: int) -> EventEnvelope:
    return EventEnvelope(
        uuid.uuid4(), "staybook.catalog.thing.happened", "thing.happened", datetime.now(UTC), {"n": number}
    )


async def test_in_process_bus_hands_a_durable_consumer_one_batch_in_order():
    bus = InProcessBus(batch_seconds=0.05)
    batches: list[list[int]] = []
    handled = asyncio.Event()

    async def on_batch(deliveries) -> None:
        batches.append([delivery.envelope.payload["n"] for delivery in deliveries])
        handled.set()

    await bus.consume("test.batch", "staybook.catalog.>", on_batch, durable=True)
    await bus.publish_batch([_envelope(0), _envelope(1)])
    await bus.publish_batch([_envelope(2)])
    await asyncio.wait_for(handled.wait(), timeout=10)
    await bus.close()
    assert batches == [[0, 1, 2]]
