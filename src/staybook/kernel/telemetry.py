"""Logs and traces: one JSON line per event with the runbook's fields, W3C trace context everywhere.

Log line fields: timestamp level service pod trace_id user_id booking_id
error_type message stack_trace context (absent ones omitted). Anything else a
caller binds lands under `context`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import sys
from contextvars import ContextVar
from typing import Any

import orjson
import structlog

TOP_LEVEL_FIELDS = (
    "timestamp",
    "level",
    "service",
    "pod",
    "trace_id",
    "span_id",
    "user_id",
    "booking_id",
    "request_id",
    "error_type",
    "message",
    "stack_trace",
)

trace_id_var: ContextVar[str | None] = ContextVar("trace_id", default=None)
span_id_var: ContextVar[str | None] = ContextVar("span_id", default=None)
# Whether the current trace is recorded (the W3C sampled flag), carried on to the events it emits.
sampled_var: ContextVar[bool] = ContextVar("trace_sampled", default=True)

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

_tracer_provider = None


def parse_traceparent(header: str | None) -> tuple[str, str] | None:
    """Returns (trace_id, parent_span_id) from a valid W3C traceparent, else None."""
    if not header:
        return None
    match = _TRACEPARENT.fullmatch(header.strip().lower())
    if not match or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return match.group(1), match.group(2)


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


def format_traceparent(trace_id: str, span_id: str, sampled: bool = True) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def current_trace_headers() -> dict[str, str]:
    """Trace context to carry inside an event, so consumers continue the same trace."""
    trace_id, span_id = trace_id_var.get(), span_id_var.get()
    if not trace_id:
        return {}
    return {"traceparent": format_traceparent(trace_id, span_id or new_span_id(), sampled_var.get())}


def bind_trace(trace_id: str, span_id: str, sampled: bool = True) -> None:
    trace_id_var.set(trace_id)
    span_id_var.set(span_id)
    sampled_var.set(sampled)
    structlog.contextvars.bind_contextvars(trace_id=trace_id)


def continue_trace_from(headers: dict[str, str] | None) -> None:
    parsed = parse_traceparent((headers or {}).get("traceparent"))
    trace_id = parsed[0] if parsed else new_trace_id()
    bind_trace(trace_id, new_span_id())


def _add_static(service: str, pod: str):
    def processor(_logger, _method, event_dict: dict[str, Any]) -> dict[str, Any]:
        event_dict.setdefault("service", service)
        event_dict.setdefault("pod", pod)
        return event_dict

    return processor


def _shape_runbook_fields(_logger, _method, event_dict: dict[str, Any]) -> dict[str, Any]:
    """Move the message to `message`, the traceback to `stack_trace`, everything else to `context`."""
    event_dict["message"] = event_dict.pop("event", "")
    exc = event_dict.pop("exception", None)
    if exc:
        event_dict["stack_trace"] = exc
        event_dict.setdefault("error_type", exc.strip().rsplit("\n", 1)[-1].split(":", 1)[0])
    for noise in ("_record", "_from_structlog", "positional_args", "color_message"):
        event_dict.pop(noise, None)
    shaped: dict[str, Any] = {}
    context: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key == "context" and isinstance(value, dict):
            context.update(value)
        elif key in TOP_LEVEL_FIELDS:
            if value is not None:
                shaped[key] = value
        else:
            context[key] = value
    if context:
        shaped["context"] = context
    return shaped


def _orjson_dumps(obj: Any, **_kw) -> str:
    return orjson.dumps(obj, default=str).decode()


def configure_logging(service: str, pod: str, level: str = "INFO", json_lines: bool = True) -> None:
    """Routes structlog and stdlib logging (uvicorn, SQLAlchemy, nats) into one JSON line format."""
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp")
    pre_chain = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        timestamper,
        _add_static(service, pod),
    ]
    renderer: Any
    if json_lines:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
        final = [structlog.processors.format_exc_info, _shape_runbook_fields, renderer]
    else:
        final = [structlog.dev.ConsoleRenderer()]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=pre_chain,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("uvicorn.access",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    structlog.configure(
        # Level first: a line below the level (the per-booking audit lines at WARNING) costs
        # nothing more than the check, instead of a timestamp and a context merge thrown away.
        processors=[
            structlog.stdlib.filter_by_level,
            *pre_chain,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def span_from(name: str, traceparent: str | None, kind: str = "CONSUMER", **attributes: Any):
    """A span continuing the trace of `traceparent` (an event's, a delivery's), current while the
    `with` block runs, and bound for logs and for the events the block emits; a no-op context
    when tracing is off."""
    if _tracer_provider is None:
        return contextlib.nullcontext()
    return _continued_span(name, traceparent, kind, attributes)


@contextlib.contextmanager
def _continued_span(name: str, traceparent: str | None, kind: str, attributes: dict[str, Any]):
    from opentelemetry import propagate, trace

    parent = propagate.extract({"traceparent": traceparent} if traceparent else {})
    tracer = _tracer_provider.get_tracer("staybook")
    with tracer.start_as_current_span(name, context=parent, kind=getattr(trace.SpanKind, kind)) as span:
        for key, value in attributes.items():
            span.set_attribute(key, value)
        ctx = span.get_span_context()
        previous = trace_id_var.get(), span_id_var.get(), sampled_var.get()
        bind_trace(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", ctx.trace_flags.sampled)
        try:
            yield span
        finally:
            trace_id_var.set(previous[0])
            span_id_var.set(previous[1])
            sampled_var.set(previous[2])


def record_publishes(events: Any, system: str) -> None:
    """A producer span per event the relay published, in the trace the event carries (the request
    or consumer that emitted it); nothing when tracing is off."""
    if _tracer_provider is None:
        return
    from opentelemetry import propagate, trace

    tracer = _tracer_provider.get_tracer("staybook")
    for event in events:
        traceparent = event.headers.get("traceparent")
        if not traceparent or traceparent.endswith("-00"):
            continue  # an unsampled trace: nothing would be recorded
        parent = propagate.extract({"traceparent": traceparent})
        span = tracer.start_span(f"publish {event.type}", context=parent, kind=trace.SpanKind.PRODUCER)
        span.set_attribute("messaging.system", system)
        span.set_attribute("messaging.destination.name", event.subject)
        span.end()


def configure_tracing(
    service: str, otlp_endpoint: str | None, sample_ratio: float = 0.1, client_calls: bool = False
) -> Any:
    """Turns on OpenTelemetry export when an OTLP endpoint is set; returns the tracer or None.

    Sampling is parent-based: a trace that arrives sampled (or not) stays so, across the bus too;
    a new trace is recorded with probability `sample_ratio`. A span that fails records the
    exception and an error status; keeping every failed trace needs tail sampling in the collector."""
    global _tracer_provider
    if not otlp_endpoint:
        return None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if _tracer_provider is None:
        endpoint = otlp_endpoint.rstrip("/")
        if not endpoint.endswith("/v1/traces"):
            endpoint += "/v1/traces"
        _tracer_provider = TracerProvider(
            resource=Resource.create({"service.name": service, "service.instance.id": os.environ.get("HOSTNAME", "")}),
            sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
        )
        _tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        trace.set_tracer_provider(_tracer_provider)
        if client_calls:
            instrument_clients(_tracer_provider)
    # From our provider, not the global one: OpenTelemetry lets the global be set once per process.
    return _tracer_provider.get_tracer("staybook")


def instrument_clients(provider: Any) -> None:
    """Client spans for asyncpg (every statement, the driver's hot paths included), Redis and httpx,
    through OpenTelemetry's maintained instrumentations. Only with tracing on: off, the clients run
    unwrapped. Their cost when on: bench/results/tracing.json (`trace_client_calls`)."""
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    for instrumentor in (AsyncPGInstrumentor(), RedisInstrumentor(), HTTPXClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)


def shutdown_tracing() -> None:
    if _tracer_provider is not None:
        _tracer_provider.shutdown()
