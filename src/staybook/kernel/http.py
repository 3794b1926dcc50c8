"""Pure ASGI middleware (no BaseHTTPMiddleware: every layer costs on the hot path).

- `RequestContextMiddleware`: request id, W3C trace context (honours `traceparent`),
  log context, an OpenTelemetry span when tracing is on, and Prometheus metrics by
  route template and status.
- `BodySizeLimitMiddleware`: refuses bodies over the limit with 413 before any parsing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import structlog
from starlette.exceptions import HTTPException

from staybook.kernel import metrics
from staybook.kernel.errors import problem_body, unexpected_error_response
from staybook.kernel.telemetry import (
    bind_trace,
    format_traceparent,
    new_span_id,
    new_trace_id,
    parse_traceparent,
    span_id_var,
    trace_id_var,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return value.decode("latin-1")
    return None


def route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if path:
        return scope.get("root_path", "") + path
    return "<unmatched>"


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, tracer: Any = None) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = parse_traceparent(header(scope, b"traceparent"))
        trace_id = incoming[0] if incoming else new_trace_id()
        span_id = new_span_id()
        request_id = header(scope, b"x-request-id")
        if not request_id or not _SAFE_REQUEST_ID.fullmatch(request_id):
            request_id = trace_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        span = None
        sampled = True
        if self.tracer is not None:
            from opentelemetry import propagate, trace

            # The caller's flags (sampled or not) and vendor state are honoured: parent-based sampling.
            carrier = {
                "traceparent": header(scope, b"traceparent") or "",
                "tracestate": header(scope, b"tracestate") or "",
            }
            span = self.tracer.start_span(
                f"{scope['method']} {scope['path']}", context=propagate.extract(carrier), kind=trace.SpanKind.SERVER
            )
            ctx = span.get_span_context()
            trace_id, span_id, sampled = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", ctx.trace_flags.sampled
        bind_trace(trace_id, span_id, sampled)
        scope.setdefault("state", {})["request_id"] = request_id
        extra_headers = [
            (b"x-request-id", request_id.encode()),
            (b"traceparent", format_traceparent(trace_id, span_id, sampled).encode()),
        ]
        status = 500
        response_started = False

        async def send_with_context(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                message["headers"] = list(message.get("headers", [])) + extra_headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_context)
        except Exception as error:
            # Answered here rather than by Starlette's outermost handler, which re-raises after
            # answering: uvicorn then closes the connection, so a client's keep-alive connection
            # was reset by every 500. A response already under way cannot be finished: re-raise.
            if span is not None:
                span.record_exception(error)
            if response_started:
                raise
            await unexpected_error_response(error, scope.get("path"))(scope, receive, send_with_context)
        finally:
            route = route_template(scope)
            elapsed = time.perf_counter() - started
            metrics.observe_http(scope["method"], route, status, elapsed)
            if span is not None:
                span.update_name(f"{scope['method']} {route}")
                span.set_attribute("http.request.method", scope["method"])
                span.set_attribute("http.route", route)
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    from opentelemetry.trace import Status, StatusCode

                    span.set_status(Status(StatusCode.ERROR))
                span.end()
            trace_id_var.set(None)
            span_id_var.set(None)


class BodySizeLimitMiddleware:
    """Rejects oversized bodies by Content-Length up front, and by counting when it is absent."""

    def __init__(self, app: ASGIApp, default_limit: int, overrides: dict[str, int] | None = None) -> None:
        self.app = app
        self.default_limit = default_limit
        self.overrides = [(re.compile(pattern), limit) for pattern, limit in (overrides or {}).items()]

    def limit_for(self, path: str) -> int:
        for pattern, limit in self.overrides:
            if pattern.match(path):
                return limit
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = header(scope, b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await send_problem(send, scope, 400, "bad-request", "Bad request", "Invalid Content-Length header")
                return
            if int(declared) > limit:
                await _send_too_large(send, scope, limit)
                return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not response_started:
                await _send_too_large(send, scope, limit)


class _BodyTooLarge(HTTPException):
    """An HTTPException so that body parsers re-raise it (FastAPI turns other errors into 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds the {limit}-byte limit for this route.")


async def _send_too_large(send: Send, scope: Scope, limit: int) -> None:
    await send_problem(
        send,
        scope,
        413,
        "payload-too-large",
        "Request body too large",
        f"The request body exceeds the {limit}-byte limit for this route.",
        max_bytes=limit,
    )


async def send_problem(send: Send, scope: Scope, status: int, code: str, title: str, detail: str, **ext) -> None:
    """A problem+json answer sent by middleware, before any route (the connection is closed after it)."""
    import orjson

    body = orjson.dumps(problem_body(status, code, title, detail, scope.get("path"), **ext))
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
