"""`/healthz/live` through the whole staybook stack vs a bare ASGI app and a bare FastAPI app
(one route, no middleware: the kernel middleware's cost is the gap to it) on the same uvicorn.

Both servers: one uvicorn worker (uvloop + httptools) pinned to CPU 0; the load generator
runs on CPU 1. Closed loop gives saturation throughput; open loop at a fixed rate gives
latency percentiles measured from the scheduled send time.

    .venv/bin/python -m bench.healthz [--duration 10] [--rate 2000]
"""

from __future__ import annotations

import argparse
import tempfile

from bench.harness import Server, load, print_table, ratio, uvicorn_command, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--rate", type=float, default=2000, help="open-loop arrival rate, requests/s")
    args = parser.parse_args()
    bare_cmd = uvicorn_command("bench.bare_asgi:app", factory=False)
    fastapi_cmd = uvicorn_command("bench.bare_fastapi:app", factory=False)
    workdir = tempfile.mkdtemp(prefix="staybook-bench-")
    staybook_cmd = uvicorn_command("staybook.app:create_app")
    env = {"STAYBOOK_DATABASE_URL": f"sqlite:///{workdir}/bench.db", "STAYBOOK_LOG_LEVEL": "WARNING"}
    rows, figures = [], {}
    servers = (("bare ASGI", bare_cmd), ("bare FastAPI", fastapi_cmd), ("staybook /healthz/live", staybook_cmd))
    for label, command in servers:
        with Server(command, env=env, cpu=0) as server:
            load(server.url, path="/healthz/live", rate=0, duration=2, cpu=1)  # warm-up
            saturated = load(server.url, path="/healthz/live", rate=0, duration=args.duration, connections=32, cpu=1)
            paced = load(
                server.url, path="/healthz/live", rate=args.rate, duration=args.duration, connections=64, cpu=1
            )
        figures[label] = {"closed_loop": saturated, "open_loop": paced}
        rows += [(f"{label} (closed loop)", saturated), (f"{label} @ {args.rate:.0f}/s", paced)]
    print_table(rows)
    throughput_ratio = ratio(
        figures["staybook /healthz/live"]["closed_loop"]["throughput_rps"],
        figures["bare ASGI"]["closed_loop"]["throughput_rps"],
    )
    print(f"\nstaybook / bare ASGI throughput ratio: {throughput_ratio}")
    # What the kernel middleware (request context, metrics, gateway) costs over the framework alone.
    middleware_ratio = ratio(
        figures["staybook /healthz/live"]["closed_loop"]["throughput_rps"],
        figures["bare FastAPI"]["closed_loop"]["throughput_rps"],
    )
    print(f"staybook / bare FastAPI throughput ratio: {middleware_ratio}")
    path = write_result(
        "healthz",
        {
            "summary": summary(figures, args.rate),
            "what": "/healthz/live through create_app (middleware, routing) vs bare ASGI, same uvicorn, 1 worker",
            "ceiling": "bare ASGI app on uvicorn (uvloop, httptools), same run",
            "open_loop_rate": args.rate,
            "results": figures,
            "ratio_to_ceiling": throughput_ratio,
            "ratio_to_bare_fastapi": middleware_ratio,
        },
    )
    print(f"wrote {path}")


def summary(figures: dict, rate: float) -> dict:
    """The headline figures: staybook's ceiling and latency at the open-loop rate, beside both bare apps."""
    staybook, asgi, fastapi = (figures[k] for k in ("staybook /healthz/live", "bare ASGI", "bare FastAPI"))
    return {
        "staybook_rps": staybook["closed_loop"]["throughput_rps"],
        "staybook_p99_ms_at_rate": staybook["open_loop"]["latency_ms"]["p99"],
        "open_loop_rate": rate,
        "bare_asgi_rps": asgi["closed_loop"]["throughput_rps"],
        "bare_fastapi_rps": fastapi["closed_loop"]["throughput_rps"],
        "ratio_to_bare_asgi": ratio(staybook["closed_loop"]["throughput_rps"], asgi["closed_loop"]["throughput_rps"]),
        "ratio_to_bare_fastapi": ratio(
            staybook["closed_loop"]["throughput_rps"], fastapi["closed_loop"]["throughput_rps"]
        ),
    }


if __name__ == "__main__":
    main()
