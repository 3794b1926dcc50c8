"""A small HTTP/1.1 load generator for staybook benchmarks, run as its own process.

Two modes:
- open loop (`--rate R`): request i is due at t0 + i/R whatever happened before; latency is
  measured from that scheduled time, so queueing in the client or the server is not hidden
  (coordinated omission avoided). Idle keep-alive connections serve due requests; when all
  are busy the request waits, and that wait counts.
- closed loop (`--rate 0`): every connection sends its next request as soon as the last
  answer arrived; gives the saturation throughput.

Requests come from a JSON file: a list of {method, path, headers?, body?} cycled in order,
or one GET of `--path`. Prints one JSON object with counts, throughput and percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np


def build_requests(host: str, specs: list[dict]) -> list[bytes]:
    raw = []
    for spec in specs:
        body = spec.get("body")
        if body is not None and not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        body_bytes = body.encode() if isinstance(body, str) else (body or b"")
        headers = {"Host": host, "Connection": "keep-alive", **(spec.get("headers") or {})}
        if body_bytes:
            headers.setdefault("Content-Type", "application/json")
            headers["Content-Length"] = str(len(body_bytes))
        head = f"{spec.get('method', 'GET')} {spec['path']} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()
        )
        raw.append(head.encode() + b"\r\n" + body_bytes)
    return raw


class Connection:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.head_at = 0.0  # perf_counter when the last response's head had arrived (time to first byte)

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, raw: bytes) -> int:
        if self.writer is None:
            await self.open()
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        self.head_at = time.perf_counter()
        status = int(head[9:12])
        length = 0
        chunked = False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            lowered = name.strip().lower()
            if lowered == b"content-length":
                length = int(value)
            elif lowered == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif lowered == b"connection" and value.strip().lower() == b"close":
                self.writer = None
        if chunked:
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
                await self.reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await self.reader.readexactly(length)
        return status


DRAIN_SECONDS = 30.0


async def open_loop(rate: float, duration: float, launch) -> list[asyncio.Future]:
    """Calls `launch(index, scheduled)` for request i at t0 + i/rate until `duration` is up, whatever the
    earlier ones are doing; `scheduled` (perf_counter) is what latency counts from. Returns the futures."""
    started = time.perf_counter()
    futures = []
    index = 0
    while True:
        scheduled = started + index / rate
        if scheduled >= started + duration:
            return futures
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        futures.append(asyncio.ensure_future(launch(index, scheduled)))
        index += 1


async def run(args, specs: list[dict]) -> dict:
    url = urlparse(args.url)
    host, port = url.hostname, url.port or 80
    requests = build_requests(f"{host}:{port}", specs)
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(args.connections):
        connection = Connection(host, port)
        await connection.open()
        idle.put_nowait(connection)
    latencies: list[float] = []
    first_bytes: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    unanswered = 0

    async def one(index: int, scheduled: float) -> None:
        nonlocal errors
        connection = await idle.get()
        try:
            status = await connection.request(requests[index % len(requests)])
            statuses[status] = statuses.get(status, 0) + 1
            latencies.append(time.perf_counter() - scheduled)
            first_bytes.append(connection.head_at - scheduled)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            connection.writer = None
        finally:
            idle.put_nowait(connection)

    started = time.perf_counter()
    deadline = started + args.duration
    if args.rate > 0:
        tasks = await open_loop(args.rate, args.duration, one)
        # A server that fell behind gets a bounded drain; what it has not answered by then counts as
        # unanswered, with the drain as its latency, a lower bound of its wait (dropping it would hide the collapse).
        _, pending = await asyncio.wait(tasks, timeout=DRAIN_SECONDS)
        if pending:
            unanswered = len(pending)
            latencies.extend([DRAIN_SECONDS] * unanswered)
            for task in pending:
                task.cancel()
    else:
        counter = iter(range(10**12))

        async def loop() -> None:
            while time.perf_counter() < deadline:
                await one(next(counter), time.perf_counter())

        await asyncio.gather(*(loop() for _ in range(args.connections)))
    elapsed = time.perf_counter() - started
    values = np.array(latencies) * 1000 if latencies else np.array([0.0])
    heads = (
        np.array(first_bytes + [DRAIN_SECONDS] * unanswered) * 1000 if first_bytes or unanswered else np.array([0.0])
    )
    return {
        "mode": "open-loop" if args.rate > 0 else "closed-loop",
        "target_rate": args.rate,
        "connections": args.connections,
        "duration_s": round(elapsed, 3),
        "completed": len(latencies) - unanswered,
        "errors": errors,
        "unanswered": unanswered,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "throughput_rps": round((len(latencies) - unanswered) / elapsed, 1),
        "latency_ms": {
            "p50": round(float(np.percentile(values, 50)), 3),
            "p90": round(float(np.percentile(values, 90)), 3),
            "p99": round(float(np.percentile(values, 99)), 3),
            "p99.9": round(float(np.percentile(values, 99.9)), 3),
            "max": round(float(values.max()), 3),
        },
        # From the scheduled send to the response's head (status line and headers) read.
        "ttfb_ms": {
            "p50": round(float(np.percentile(heads, 50)), 3),
            "p99": round(float(np.percentile(heads, 99)), 3),
            "max": round(float(heads.max()), 3),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--path", default="/")
    parser.add_argument("--requests", help="JSON file with a list of {method, path, headers, body}")
    parser.add_argument("--rate", type=float, default=0, help="requests/s (open loop); 0 = closed loop")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    specs = json.loads(Path(args.requests).read_text()) if args.requests else [{"method": "GET", "path": args.path}]
    print(json.dumps(asyncio.run(run(args, specs))))


if __name__ == "__main__":
    main()
