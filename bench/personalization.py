"""Personalisation in the production topology: signal ingest, freshness, recommendations, re-ranking.

`staybook serve --workers 2` + one `staybook worker` on PostgreSQL (a database of its own), Redis
(a key prefix of its own) and NATS JetStream (a namespace of its own), all on 127.0.0.1.

- Ingest: `POST /api/v1/signals` with batches of 500 signals (signed-in users), closed loop for the
  saturation rate and open loop at a fixed rate for p99; beside it, in the same run, raw nats-py
  JetStream publishes of the same bytes the API publishes per batch (the ceiling). CPU-µs per
  signal for the API, the NATS server and the worker (aggregator + archiver) from /proc.
- Freshness: while ingest runs open loop, probe batches of one view each; the time from the 202
  to the view being in the user's profile in Redis (polled every millisecond), p50/p99.
- Serving: `GET /api/v1/recommendations` for signed-in users with profiles, closed and open loop,
  with the bare ASGI app on the same uvicorn as the ceiling.
- Re-ranking: what `sort=relevance` costs a signed-in search (profile read from Redis + keys over
  the matches), measured in this process.

    flock /tmp/staybook-bench.lock .venv/bin/python -m bench.personalization [--duration 10]

Writes bench/results/personalization.json. The machine is shared: figures carry the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import orjson
import psycopg

from bench.booking import cpu_seconds, delete_streams, nats_reachable
from bench.harness import (
    ROOT,
    Server,
    load,
    print_table,
    ratio,
    staybook_command,
    stop_process,
    uvicorn_command,
    write_result,
)
from staybook import migrate
from staybook.kernel.security import TokenSigner
from staybook.kernel.settings import Settings

ADMIN_URL = os.environ.get("STAYBOOK_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
DATABASE = "staybook_bench_personalization"
NATS_URL = os.environ.get("STAYBOOK_BENCH_NATS_URL", "nats://127.0.0.1:4222")
REDIS_URL = os.environ.get("STAYBOOK_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
BATCH = 500


def fresh_database() -> str:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{DATABASE}"
    migrate.upgrade(Settings(database_url=url, environment="test"))
    return url


def property_ids(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(row[0]) for row in conn.execute("SELECT id FROM properties WHERE status = 'active'")]


def nats_server_pid() -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() == "nats-server":
                    return int(entry.name)
    return None


def signal_bodies(properties: list[str], users: list[uuid.UUID], count: int, seed: int) -> list[tuple[uuid.UUID, str]]:
    rng = random.Random(seed)
    now = datetime.now(UTC).isoformat()
    bodies = []
    for index in range(count):
        kinds = ("view", "click", "dwell", "view", "wishlist")
        signals = []
        for _ in range(BATCH):
            kind = rng.choice(kinds)
            signal = {"kind": kind, "at": now, "property_id": rng.choice(properties)}
            if kind == "view":
                signal["price"] = rng.randint(5_000, 40_000)
            elif kind == "click":
                signal["position"] = rng.randint(0, 19)
            elif kind == "dwell":
                signal["ms"] = rng.randint(1_000, 90_000)
            signals.append(signal)
        bodies.append((users[index % len(users)], orjson.dumps({"signals": signals}).decode()))
    return bodies


def encoded_batch_for_raw_publish(properties: list[str]) -> bytes:
    """The bytes the API publishes for one batch of 500 views (signals.encode_batch)."""
    from staybook.personalization.signals import SignalBatch, SignalRecord, encode_batch

    rng = random.Random(1)
    now = int(time.time() * 1000)
    records = [SignalRecord("view", now, uuid.UUID(rng.choice(properties)), price=12_000) for _ in range(BATCH)]
    return encode_batch(SignalBatch(uuid.uuid4(), now, uuid.uuid4(), None, records))


async def raw_publish(namespace: str, data: bytes, seconds: float) -> dict:
    """JetStream publishes of `data` with acks, at most 256 in flight (as many as the API's concurrency
    allows), each with its own Nats-Msg-Id, to a stream like the signals stream."""
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(NATS_URL)
    js = nc.jetstream(timeout=10)
    stream = f"{namespace.upper()}_RAWSIGNALS"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{namespace}.rawsignals.>"], max_age=600))
    sent = 0
    pending: set = set()
    started = time.perf_counter()
    deadline = started + seconds
    try:
        while time.perf_counter() < deadline:
            future = await js.publish_async(
                f"{namespace}.rawsignals.batch", data, headers={"Nats-Msg-Id": uuid.uuid4().hex}
            )
            pending.add(future)
            sent += 1
            if len(pending) >= 256:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    finally:
        with contextlib.suppress(Exception):
            await js.delete_stream(stream)
        await nc.close()
    return {"messages": sent, "seconds": round(elapsed, 2), "messages_per_s": round(sent / elapsed, 1),
            "signals_per_s": round(sent * BATCH / elapsed), "bytes_per_message": len(data)}  # fmt: skip


async def freshness_probes(url: str, redis_prefix: str, tokens: dict, properties: list[str], probes: int) -> dict:
    """Sends `probes` one-view batches (one every 100 ms) and times 202 -> the view in Redis."""
    import httpx
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    delays, lost, refused, late = [], 0, {}, []
    rng = random.Random(5)
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        for _ in range(probes):
            user = uuid.uuid4()
            token = tokens["signer"].issue(user, "guest")
            item = rng.choice(properties)
            body = {"signals": [{"kind": "view", "at": datetime.now(UTC).isoformat(), "property_id": item}]}
            answer = await http.post("/api/v1/signals", json=body, headers={"Authorization": f"Bearer {token}"})
            accepted = time.perf_counter()
            if answer.status_code != 202 or answer.json()["accepted"] != 1:  # refused: the client was told
                why = answer.status_code if answer.status_code != 202 else answer.json()["rejected"][0]["status"]
                refused[str(why)] = refused.get(str(why), 0) + 1
                continue
            key = f"{redis_prefix}pz:{{u:{user.hex}}}:recent"
            member = uuid.UUID(item).hex
            while time.perf_counter() - accepted < 10:
                if await client.zscore(key, member) is not None:
                    delays.append((time.perf_counter() - accepted) * 1000)
                    break
                await asyncio.sleep(0.001)
            else:
                lost += 1
                late.append((key, member))
            await asyncio.sleep(0.1)
    # Late or lost? The ones not seen within 10 s get another minute (the stream keeps them).
    deadline = time.perf_counter() + 60
    while late and time.perf_counter() < deadline:
        late = [(key, member) for key, member in late if await client.zscore(key, member) is None]
        await asyncio.sleep(0.5)
    await client.aclose()
    values = np.asarray(delays) if delays else np.asarray([float("nan")])
    return {
        "probes": probes,
        "seen": len(delays),
        "not_seen_within_10s": lost,  # accepted (202) and not in the profile 10 s later
        "refused": refused,
        "not_seen_within_70s": len(late),
        "p50_ms": round(float(np.percentile(values, 50)), 1),
        "p99_ms": round(float(np.percentile(values, 99)), 1),
        "max_ms": round(float(values.max()), 1),
    }


async def rerank_cost(redis_prefix: str, users: list[uuid.UUID], matches: int) -> dict:
    """One signed-in search's extra work: `for_audience` (profile + co-visitation reads from Redis)
    and `keys()` over `matches` matches, against the default rating keys over the same matches."""
    import redis.asyncio as redis

    from staybook.personalization.profiles import Decay
    from staybook.personalization.repository import RedisProfileStore
    from staybook.personalization.rerank import ProfileRanker
    from staybook.personalization.service import Personalization
    from staybook.search.index import Matches, rating_keys
    from staybook.search.query import SearchQuery

    settings = Settings().personalization
    client = redis.from_url(REDIS_URL)
    store = RedisProfileStore(client, redis_prefix + "pz:", settings)
    deps = Personalization(settings, "", None, store, None, None, Decay.of(settings))  # type: ignore[arg-type]
    ranker = ProfileRanker(deps)
    rng = np.random.default_rng(3)
    match_set = Matches(
        rng.integers(10_000, 100_000, matches),
        rng.integers(30, 50, matches).astype(np.int16),
        None,
        rng.integers(0, 2**63, matches, dtype=np.uint64),
        rng.integers(0, 2**63, matches, dtype=np.uint64),
    )
    query = SearchQuery(check_in=datetime.now(UTC).date(), check_out=datetime.now(UTC).date())
    prepare, keys, baseline = [], [], []
    for user in users[:200]:
        started = time.perf_counter()
        personal = await ranker.for_audience(f"u:{user.hex}")
        prepare.append(time.perf_counter() - started)
        started = time.perf_counter()
        personal.keys(query, match_set)
        keys.append(time.perf_counter() - started)
        started = time.perf_counter()
        rating_keys(match_set)
        baseline.append(time.perf_counter() - started)
    await client.aclose()

    def micro(values: list[float]) -> dict:
        return {"p50_us": round(float(np.percentile(values, 50)) * 1e6, 1),
                "p99_us": round(float(np.percentile(values, 99)) * 1e6, 1)}  # fmt: skip

    return {"matches": matches, "for_audience_redis": micro(prepare), "keys": micro(keys),
            "default_rating_keys": micro(baseline)}  # fmt: skip


def cpu_split(api_pid: int, worker_pid: int, nats_pid: int | None) -> dict:
    return {
        "api": cpu_seconds(api_pid),
        "worker": cpu_seconds(worker_pid),
        "nats": cpu_seconds(nats_pid) if nats_pid else 0.0,
    }


def per_signal(before: dict, after: dict, signals: int) -> dict:
    return {name: round(1e6 * (after[name] - before[name]) / max(1, signals), 2) for name in after}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--properties", type=int, default=300)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--ingest-rate", type=float, default=0, help="open-loop batches/s (0: 60%% of saturation)")
    parser.add_argument(
        "--serving-rate", type=float, default=0, help="open-loop recommendations/s (0: 60%% of saturation)"
    )
    parser.add_argument("--serving-target", type=float, default=2000, help="the issue's target rate, also run")
    parser.add_argument("--probes", type=int, default=100)
    args = parser.parse_args()
    if not nats_reachable(NATS_URL):
        raise SystemExit(f"NATS is not reachable at {NATS_URL}")

    url = fresh_database()
    run = uuid.uuid4().hex[:8]
    namespace, redis_prefix = f"benchpz{run}", f"benchpz{run}:"
    workdir = Path(tempfile.mkdtemp(prefix="staybook-bench-pz-"))
    env = {
        "STAYBOOK_DATABASE_URL": url,
        "STAYBOOK_REDIS_URL": REDIS_URL,
        "STAYBOOK_REDIS_KEY_PREFIX": redis_prefix,
        "STAYBOOK_NATS_URL": NATS_URL,
        "STAYBOOK_BUS_NAMESPACE": namespace,
        "STAYBOOK_LOG_LEVEL": "WARNING",
        "STAYBOOK_PERSONALIZATION__ARCHIVE_DIR": str(workdir / "signals"),
        "STAYBOOK_PERSONALIZATION__MODEL_DIR": str(workdir / "models"),
        "STAYBOOK_PERSONALIZATION__RETRAIN_INTERVAL_SECONDS": "0",
    }
    full_env = {**os.environ, **env}
    subprocess.run(
        [*staybook_command("seed", "--properties", str(args.properties))], env=full_env, check=True, cwd=ROOT,
        capture_output=True,
    )  # fmt: skip
    properties = property_ids(url)
    signer = TokenSigner(Settings())
    users = [uuid.uuid4() for _ in range(args.users)]
    tokens = {user: signer.issue(user, "guest", ttl=None) for user in users}
    bodies = signal_bodies(properties, users, 400, seed=1)
    specs = [
        {"method": "POST", "path": "/api/v1/signals", "headers": {"Authorization": f"Bearer {tokens[u]}"}, "body": b}
        for u, b in bodies
    ]
    nats_pid = nats_server_pid()
    results: dict = {}
    worker = subprocess.Popen(
        staybook_command("worker"), env=full_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        with Server(staybook_command("serve", "--workers", "2", "--port", "{port}"), env=env) as server:
            time.sleep(2)
            load(server.url, requests=specs[:20], rate=0, duration=2, connections=8)  # warm-up
            before = cpu_split(server.process.pid, worker.pid, nats_pid)
            saturated = load(server.url, requests=specs, rate=0, duration=args.duration, connections=16)
            after = cpu_split(server.process.pid, worker.pid, nats_pid)
            accepted = saturated["statuses"].get("202", 0)
            ingest_rate = args.ingest_rate or max(1.0, 0.6 * saturated["throughput_rps"])
            raw = asyncio.run(raw_publish(namespace, encoded_batch_for_raw_publish(properties), args.duration))
            paced_holder: dict = {}

            def paced_run() -> None:
                paced_holder["figures"] = load(
                    server.url, requests=specs, rate=ingest_rate, duration=args.duration, connections=64
                )

            import threading

            background = threading.Thread(target=paced_run)
            background.start()
            time.sleep(1)
            freshness = asyncio.run(
                freshness_probes(server.url, redis_prefix, {"signer": signer}, properties, args.probes)
            )
            background.join()
            paced = paced_holder["figures"]
            results["ingest"] = {
                "signals_per_batch": BATCH,
                "closed_loop": saturated,
                "closed_loop_signals_per_s": round(accepted * BATCH / saturated["duration_s"]),
                "open_loop": paced,
                "open_loop_batches_per_s": ingest_rate,
                "open_loop_signals_per_s": round(paced["statuses"].get("202", 0) * BATCH / paced["duration_s"]),
                "raw_nats_publish_same_bytes": raw,
                "ratio_to_raw_publish": ratio(accepted * BATCH / saturated["duration_s"], raw["signals_per_s"]),
                "cpu_us_per_signal_closed_loop": per_signal(before, after, accepted * BATCH),
                "cpu_note": "api: both uvicorn workers; worker: aggregator + archiver + relay; nats: the shared "
                "nats-server process, which other tenants of this machine also use during the run",
            }
            results["freshness"] = {"while_ingesting_batches_per_s": ingest_rate, **freshness}
            time.sleep(3)  # let the aggregator catch up before serving
            recommend_specs = [
                {
                    "method": "GET",
                    "path": "/api/v1/recommendations",
                    "headers": {"Authorization": f"Bearer {tokens[u]}"},
                }
                for u in users[:400]
            ]
            load(server.url, requests=recommend_specs[:50], rate=0, duration=2, connections=8)
            serving_closed = load(server.url, requests=recommend_specs, rate=0, duration=args.duration, connections=32)
            serving_rate = args.serving_rate or max(1.0, round(0.6 * serving_closed["throughput_rps"]))
            serving_open = load(
                server.url, requests=recommend_specs, rate=serving_rate, duration=args.duration, connections=64
            )
            serving_at_target = load(
                server.url, requests=recommend_specs, rate=args.serving_target, duration=args.duration, connections=64
            )
        with Server(uvicorn_command("bench.bare_asgi:app", "--workers", "2", factory=False)) as bare:
            bare_closed = load(bare.url, path="/", rate=0, duration=args.duration, connections=32)
        results["serving"] = {
            "closed_loop": serving_closed,
            "open_loop": serving_open,
            "open_loop_rate": serving_rate,
            "open_loop_at_target": serving_at_target,
            "target_rate": args.serving_target,
            "bare_asgi_closed_loop": bare_closed,
            "ratio_to_bare_asgi": ratio(serving_closed["throughput_rps"], bare_closed["throughput_rps"]),
        }
        results["rerank"] = asyncio.run(rerank_cost(redis_prefix, users, 500))
    finally:
        stop_process(worker, timeout=15)
        with contextlib.suppress(Exception):
            asyncio.run(delete_streams(namespace, NATS_URL))
        _delete_redis_keys(redis_prefix)
    print_table(
        [
            ("ingest batches (closed loop)", results["ingest"]["closed_loop"]),
            (f"ingest batches @ {results['ingest']['open_loop_batches_per_s']:.0f}/s", results["ingest"]["open_loop"]),
            ("recommendations (closed loop)", results["serving"]["closed_loop"]),
            (f"recommendations @ {results['serving']['open_loop_rate']:.0f}/s", results["serving"]["open_loop"]),
            (f"recommendations @ {args.serving_target:.0f}/s (target)", results["serving"]["open_loop_at_target"]),
            ("bare ASGI (closed loop)", results["serving"]["bare_asgi_closed_loop"]),
        ]
    )
    print(f"raw JetStream publish of the same bytes: {results['ingest']['raw_nats_publish_same_bytes']}")
    print(f"freshness: {results['freshness']}")
    print(f"CPU-us per signal: {results['ingest']['cpu_us_per_signal_closed_loop']}")
    print(f"re-ranking: {results['rerank']}")
    summary = {
        "topology": "staybook serve --workers 2 + staybook worker on PostgreSQL, Redis and NATS JetStream (127.0.0.1)",
        "signals_per_s": results["ingest"]["closed_loop_signals_per_s"],
        "ingest_p99_ms": results["ingest"]["open_loop"]["latency_ms"]["p99"],
        "ingest_open_loop_signals_per_s": results["ingest"]["open_loop_signals_per_s"],
        "freshness_p99_ms": results["freshness"]["p99_ms"],
        "recommendations_per_s": results["serving"]["closed_loop"]["throughput_rps"],
        "recommendations_p99_ms": results["serving"]["open_loop"]["latency_ms"]["p99"],
        "recommendations_open_loop_rate": results["serving"]["open_loop_rate"],
        "recommendations_p99_ms_at_target_rate": results["serving"]["open_loop_at_target"]["latency_ms"]["p99"],
        "recommendations_target_rate": args.serving_target,
        "raw_publish_signals_per_s": results["ingest"]["raw_nats_publish_same_bytes"]["signals_per_s"],
        "ratio_ingest_to_raw_publish": results["ingest"]["ratio_to_raw_publish"],
        "ratio_recommendations_to_bare_asgi": results["serving"]["ratio_to_bare_asgi"],
        "load_average_at_start": LOAD_AT_START,
    }
    write_result("personalization", {"summary": summary, **results})


def _delete_redis_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=prefix + "*", count=5000))
    for start in range(0, len(keys), 5000):
        client.delete(*keys[start : start + 5000])


LOAD_AT_START = [round(value, 2) for value in os.getloadavg()]

if __name__ == "__main__":
    main()
