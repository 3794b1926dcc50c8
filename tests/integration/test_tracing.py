"""Setting an OTLP endpoint turns on trace export: spans reach a real OTLP/HTTP receiver."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from staybook.kernel import telemetry


class Receiver(BaseHTTPRequestHandler):
    received: list[bytes] = []

    def do_POST(self):  # noqa: N802 (http.server naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


async def test_request_spans_are_exported_with_the_incoming_trace_id(client_for, sqlite_settings):
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings = sqlite_settings.model_copy(update={"otlp_endpoint": f"http://127.0.0.1:{server.server_port}"})
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    try:
        async with client_for(settings) as client:
            response = await client.get("/healthz/live", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
            assert response.headers["traceparent"].split("-")[1] == trace_id
        telemetry.shutdown_tracing()  # flushes the batch processor
    finally:
        server.shutdown()
        telemetry._tracer_provider = None
    paths = {path for path, _ in Receiver.received}
    assert paths == {"/v1/traces"}
    spans = []
    for _, body in Receiver.received:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    names = {span.name for span in spans}
    assert "GET /healthz/live" in names
    assert any(span.trace_id.hex() == trace_id for span in spans)


def exported_spans() -> list:
    spans = []
    for _, body in Receiver.received:
        for resource_spans in ExportTraceServiceRequest.FromString(body).resource_spans:
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    return spans


async def test_a_bookings_trace_runs_from_the_request_through_the_worker_to_the_mail(client_for, sqlite_settings):
    """Sampled at 0 for new traces: only the caller's sampled trace is recorded (parent-based), and
    it continues through the outbox and bus (the consumer) to the message the sender sends."""
    import asyncio
    import uuid

    from tests.bookings import hold_body, seed_room_type
    from tests.conftest import bearer

    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = sqlite_settings.model_copy(
        update={
            "otlp_endpoint": f"http://127.0.0.1:{server.server_port}",
            "trace_sample_ratio": 0.0,
            "run_worker_in_process": True,
            "payments": sqlite_settings.payments.model_copy(update={"sandbox_instant": True}),
        }
    )
    trace_id, untraced = "5bf92f3577b34da6a3ce929d0e0e4737", "6bf92f3577b34da6a3ce929d0e0e4738"
    try:
        async with client_for(settings) as client:
            room = await seed_room_type(client.app.state.runtime, total=2)
            headers = bearer(settings)
            for traced, body in ((untraced, "00"), (trace_id, "01")):
                parent = {"traceparent": f"00-{traced}-00f067aa0ba902b7-{body}", "tracestate": "vendor=1"}
                held = await client.post(
                    "/api/v1/bookings",
                    json=hold_body(room["room_type_id"]),
                    headers=headers | parent | {"Idempotency-Key": uuid.uuid4().hex},
                )
                assert held.status_code == 201, held.text
                assert held.headers["traceparent"].endswith("-" + body)
            for _ in range(200):  # the in-process worker relays, consumes and sends
                await asyncio.sleep(0.1)
                telemetry._tracer_provider.force_flush()
                if any(span.name.startswith("send email") for span in exported_spans()):
                    break
        telemetry.shutdown_tracing()
    finally:
        server.shutdown()
        telemetry._tracer_provider = None
    spans = exported_spans()
    assert spans and all(span.trace_id.hex() == trace_id for span in spans)  # the unsampled one: nothing
    names = {span.name for span in spans}
    assert "POST /bookings" in names or "POST /api/v1/bookings" in names, names
    assert "publish booking.held" in names, names
    assert "consume booking.held" in names, names
    assert "send email booking_held" in names, names


async def test_client_spans_name_the_statements_when_asked_for(client_for, pg_settings):
    """trace_client_calls: each PostgreSQL statement of a request is a client span of its trace."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = pg_settings.model_copy(
        update={"otlp_endpoint": f"http://127.0.0.1:{server.server_port}", "trace_client_calls": True}
    )
    trace_id = "7bf92f3577b34da6a3ce929d0e0e4739"
    try:
        async with client_for(settings) as client:
            response = await client.get(
                "/healthz/ready", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"}
            )
            assert response.status_code == 200, response.text
        telemetry.shutdown_tracing()
    finally:
        server.shutdown()
        telemetry._tracer_provider = None
        for instrumentor in (AsyncPGInstrumentor(), RedisInstrumentor(), HTTPXClientInstrumentor()):
            instrumentor.uninstrument()
    spans = [span for span in exported_spans() if span.trace_id.hex() == trace_id]
    database = [span for span in spans if any(a.key == "db.system" for a in span.attributes)]
    assert database, [span.name for span in spans]
