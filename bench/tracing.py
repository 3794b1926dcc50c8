"""What tracing costs the hot paths: microseconds per PostgreSQL statement (asyncpg, the driver the
booking hot paths use), uninstrumented (the ceiling) and with OpenTelemetry's asyncpg
instrumentation on, at the default 10% sampling and inside an unsampled request's trace (what 90%
of requests see). Writes bench/results/tracing.json.

    .venv/bin/python -m bench.tracing
"""

from __future__ import annotations

import asyncio
import os
import time

import asyncpg

from bench.harness import write_result

DSN = os.environ.get("STAYBOOK_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
STATEMENTS = 4000


async def per_statement(connection, count: int = STATEMENTS) -> float:
    for _ in range(200):  # warm the prepared statement
        await connection.fetchval("SELECT $1::int", 1)
    started = time.perf_counter()
    for i in range(count):
        await connection.fetchval("SELECT $1::int", i)
    return 1e6 * (time.perf_counter() - started) / count


async def measure() -> dict:
    from opentelemetry import context, trace
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    class Discard(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    rounds: dict[str, list[float]] = {"uninstrumented": [], "sampled_10_percent": [], "in_unsampled_request": []}
    provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(0.1)))
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    for _ in range(3):  # interleaved rounds: the machine's load moves between them
        connection = await asyncpg.connect(DSN)
        rounds["uninstrumented"].append(await per_statement(connection))
        await connection.close()
        AsyncPGInstrumentor().instrument(tracer_provider=provider)
        connection = await asyncpg.connect(DSN)
        rounds["sampled_10_percent"].append(await per_statement(connection))
        unsampled = trace.set_span_in_context(
            trace.NonRecordingSpan(
                trace.SpanContext(0x5BF92F3577B34DA6A3CE929D0E0E4737, 0x00F067AA0BA902B7, False, trace.TraceFlags(0))
            )
        )
        token = context.attach(unsampled)
        try:
            rounds["in_unsampled_request"].append(await per_statement(connection))
        finally:
            context.detach(token)
        await connection.close()
        AsyncPGInstrumentor().uninstrument()
    provider.shutdown()
    best = {mode: round(min(values), 1) for mode, values in rounds.items()}
    ceiling = best["uninstrumented"]
    return {
        "us_per_statement": best,
        "rounds": rounds,
        "overhead_us_per_statement": {mode: round(value - ceiling, 1) for mode, value in best.items()},
        "ratio_to_uninstrumented": {mode: round(value / ceiling, 3) for mode, value in best.items()},
    }


def main() -> None:
    figures = asyncio.run(measure())
    for mode, value in figures["us_per_statement"].items():
        print(f"{mode:24} {value:8.1f} us/statement  ratio {figures['ratio_to_uninstrumented'][mode]}")
    path = write_result(
        "tracing",
        {
            "what": "a PostgreSQL round trip (SELECT $1) on asyncpg, with and without OpenTelemetry's asyncpg"
            " instrumentation; best of 3 interleaved rounds of 4,000 statements",
            "ceiling": "the same statements uninstrumented, same connection settings, same run",
            **figures,
            "summary": {
                "uninstrumented_us_per_statement": figures["us_per_statement"]["uninstrumented"],
                "sampled_10_percent_overhead_us": figures["overhead_us_per_statement"]["sampled_10_percent"],
                "unsampled_request_overhead_us": figures["overhead_us_per_statement"]["in_unsampled_request"],
            },
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
