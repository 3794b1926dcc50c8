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
