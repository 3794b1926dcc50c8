"""Identity: sign-ins per second per core (argon2id dominates), and what token verification adds to a read.

Against real PostgreSQL and Redis (127.0.0.1), one `uvicorn` worker pinned to CPU 0 and the load
generator (bench/loadgen.py) on CPU 1. Phases:

1. ceiling for sign-in: argon2id verifications per second on one core, in-process, with the
   configured parameters (what a login can never beat);
2. POST /api/v1/auth/login through the whole stack (gateway rate limit on Redis, argon2 verify,
   refresh token + audit entry + `user.signed_in` outbox row in one transaction), closed loop,
   then open loop at a fixed rate below saturation;
3. GET /bench/cached-read (bench/identity_app.py: a Redis-cached value behind the kernel's
   `optional_principal`) without and with a bearer token, closed and open loop, same server.

The per-IP and per-account sign-in limits are lifted for the run (one client, one account).

    .venv/bin/python -m bench.identity [--duration 10] [--login-rate 5] [--read-rate 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid

import httpx
import psycopg

from bench.harness import RESULTS, Server, load, print_table, ratio, uvicorn_command, write_result
from staybook import migrate
from staybook.identity.passwords import PasswordHashing
from staybook.kernel.security import TokenSigner, TokenVersions
from staybook.kernel.settings import Settings

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379"
EMAIL, PASSWORD = "bench.login@example.com", "violet-harbour-91"


def argon2_ceiling(settings: Settings, seconds: float = 5.0) -> dict:
    identity = settings.identity
    hashing = PasswordHashing(identity.argon2_time_cost, identity.argon2_memory_kib, identity.argon2_parallelism)
    stored = hashing.hash(PASSWORD)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        hashing.verify(stored, PASSWORD)
        count += 1
    elapsed = time.perf_counter() - started
    return {"verifications_per_s": round(count / elapsed, 1), "ms_each": round(1000 * elapsed / count, 2)}


def token_verify_cost(settings: Settings, count: int = 5000) -> dict:
    """Microseconds per access-token verification on one core: a token seen for the first time
    (HS256, kid lookup, claims checks) and one the process has already verified (remembered)."""
    signer = TokenSigner(settings)
    tokens = [signer.issue(uuid.uuid4(), "guest") for _ in range(count)]
    started = time.perf_counter()
    for token in tokens:
        signer.verify(token)
    first = (time.perf_counter() - started) / count
    started = time.perf_counter()
    for token in tokens:
        signer.verify(token)
    repeat = (time.perf_counter() - started) / count
    return {
        "verifications_per_s": round(1 / first),
        "us_each": round(1e6 * first, 1),
        "us_each_remembered": round(1e6 * repeat, 2),
    }


async def revocation_check_cost(cache_seconds: float, count: int = 3000) -> dict:
    """Microseconds each request pays so that a revoked token (role change, erasure, password change,
    sign-out everywhere) is refused on the next request: the user's token version, from this
    process's cache (hit) or from Redis (one GET, what a cache miss costs, once per user per
    `cache_seconds`)."""
    import redis.asyncio as redis

    client = redis.from_url(REDIS_URL)
    prefix = f"benchtokver{uuid.uuid4().hex[:8]}:"
    users = [uuid.uuid4() for _ in range(count)]
    shared = TokenVersions(cache_seconds=0)
    shared.use_redis(client, prefix)
    # A hit costs the same whatever the TTL; a long one keeps the filled entries while this loaded
    # machine fills them (at a few ms per GET, 3,000 users take longer than the default 2 s).
    cached = TokenVersions(cache_seconds=3600)
    cached.use_redis(client, prefix)
    try:
        for user in users:
            await shared.raised(user, 1)
        started = time.perf_counter()
        for user in users:
            await shared.current(user)
        from_redis = (time.perf_counter() - started) / count
        for user in users:
            await cached.current(user)  # fill the cache
        started = time.perf_counter()
        for user in users:
            await cached.current(user)
        hit = (time.perf_counter() - started) / count
    finally:
        for start in range(0, count, 500):
            await client.delete(*(prefix + str(user) for user in users[start : start + 500]))
        await client.aclose()
    return {
        "cache_seconds": cache_seconds,
        "us_per_request_cached": round(1e6 * hit, 2),
        "us_per_request_from_redis": round(1e6 * from_redis, 1),
        "note": "a revoked token is refused on its next request in this process, and within cache_seconds "
        "in the others (the revoking process also announces the new version as an event)",
    }


def headline(result: dict) -> dict:
    """The figures the identity issue names, from a whole result document."""
    revocation = result.get("revocation_check", {})
    return {
        "login_per_s": result["login"]["closed_loop"]["throughput_rps"],
        "login_ceiling_argon2_per_s": result["argon2_ceiling"]["verifications_per_s"],
        "login_ratio_to_ceiling": result["ratio_to_ceiling"]["login"],
        "login_p99_ms": result["login"]["open_loop"]["latency_ms"]["p99"],
        "authenticated_read_ratio_to_anonymous": result["ratio_to_ceiling"]["authenticated_read"],
        "revocation_check_us_cached": revocation.get("us_per_request_cached"),
        "revocation_check_us_from_redis": revocation.get("us_per_request_from_redis"),
    }


def record_revocation_cost() -> None:
    """`--revocation-only`: measures the revocation check and adds it to the existing result."""
    settings = Settings(environment="test")
    cost = asyncio.run(revocation_check_cost(settings.identity.token_version_cache_seconds))
    path = RESULTS / "identity.json"
    result = json.loads(path.read_text())
    result["revocation_check"] = {**cost, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    result["revocation_check"]["load_average_1m"] = round(os.getloadavg()[0], 2)
    result["summary"] = headline(result)
    path.write_text(json.dumps(result, indent=2) + "\n")
    cached, from_redis = cost["us_per_request_cached"], cost["us_per_request_from_redis"]
    print(f"revocation check: {cached} us cached, {from_redis} us from Redis")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--login-rate", type=float, default=5, help="open-loop sign-ins/s (below saturation)")
    parser.add_argument("--read-rate", type=float, default=300, help="open-loop cached reads/s (below saturation)")
    parser.add_argument("--revocation-only", action="store_true", help="only measure the revocation check")
    args = parser.parse_args()
    if args.revocation_only:
        record_revocation_cost()
        return

    database = f"staybook_bench_identity_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    database_url = f"postgresql://postgres@127.0.0.1:5432/{database}"
    env = {
        "STAYBOOK_DATABASE_URL": database_url,
        "STAYBOOK_REDIS_URL": REDIS_URL,
        "STAYBOOK_REDIS_KEY_PREFIX": f"bench{uuid.uuid4().hex[:8]}:",
        "STAYBOOK_LOG_LEVEL": "WARNING",
        "STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "100000000",
        "STAYBOOK_IDENTITY__LOGIN_PER_IP": "[100000000, 60, 0]",
        "STAYBOOK_IDENTITY__LOGIN_PER_ACCOUNT": "[100000000, 60, 0]",
    }
    settings = Settings(database_url=database_url, environment="test")
    try:
        migrate.upgrade(settings)
        os.sched_setaffinity(0, {0})
        ceiling = argon2_ceiling(settings)
        token_cost = token_verify_cost(settings)
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        uvicorn = uvicorn_command("bench.identity_app:create_app")
        with Server(uvicorn, env=env, cpu=0) as server:
            client = httpx.Client(base_url=server.url, timeout=30)
            registered = client.post(
                "/api/v1/auth/register", json={"email": EMAIL, "password": PASSWORD, "name": "Bench", "role": "guest"}
            )
            registered.raise_for_status()
            token = client.post("/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}).json()[
                "access_token"
            ]
            login_spec = [
                {"method": "POST", "path": "/api/v1/auth/login", "body": {"email": EMAIL, "password": PASSWORD}}
            ]
            anonymous = [{"method": "GET", "path": "/bench/cached-read"}]
            authenticated = [
                {"method": "GET", "path": "/bench/cached-read", "headers": {"Authorization": f"Bearer {token}"}}
            ]
            load(server.url, requests=anonymous, rate=0, duration=2, cpu=1)  # warm-up
            login_closed = load(server.url, requests=login_spec, rate=0, duration=args.duration, connections=8, cpu=1)
            login_open = load(
                server.url, requests=login_spec, rate=args.login_rate, duration=args.duration, connections=16, cpu=1
            )
            read = {}
            for label, spec in (("anonymous", anonymous), ("authenticated", authenticated)):
                read[label] = {
                    "closed_loop": load(
                        server.url, requests=spec, rate=0, duration=args.duration, connections=32, cpu=1
                    ),
                    "open_loop": load(
                        server.url, requests=spec, rate=args.read_rate, duration=args.duration, connections=64, cpu=1
                    ),
                }
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    print(
        f"argon2id {settings.identity.argon2_memory_kib} KiB, t={settings.identity.argon2_time_cost}, "
        f"p={settings.identity.argon2_parallelism}: {ceiling['verifications_per_s']} verifications/s on one core "
        f"({ceiling['ms_each']} ms each)"
    )
    print(
        f"access-token verification: {token_cost['us_each']} µs first time ({token_cost['verifications_per_s']}/s, "
        f"one core), {token_cost['us_each_remembered']} µs when remembered"
    )
    print_table(
        [
            ("login (closed loop)", login_closed),
            (f"login @ {args.login_rate:.0f}/s", login_open),
            ("cached read, anonymous (closed)", read["anonymous"]["closed_loop"]),
            ("cached read, bearer token (closed)", read["authenticated"]["closed_loop"]),
            (f"cached read, anonymous @ {args.read_rate:.0f}/s", read["anonymous"]["open_loop"]),
            (f"cached read, bearer @ {args.read_rate:.0f}/s", read["authenticated"]["open_loop"]),
        ]
    )
    login_ratio = ratio(login_closed["throughput_rps"], ceiling["verifications_per_s"])
    auth_ratio = ratio(
        read["authenticated"]["closed_loop"]["throughput_rps"], read["anonymous"]["closed_loop"]["throughput_rps"]
    )
    print(f"\nlogins/s per core vs argon2 ceiling: {login_ratio}; authenticated / anonymous read: {auth_ratio}")
    result = {
        "what": "sign-in through the whole stack (PostgreSQL, Redis) and a cached read with/without a bearer token",
        "ceiling": {
            "login": "argon2id verifications/s on one core in-process, same parameters, same run",
            "authenticated_read": "the same route without a token, same server, same run",
        },
        "argon2": PasswordHashing(
            settings.identity.argon2_time_cost,
            settings.identity.argon2_memory_kib,
            settings.identity.argon2_parallelism,
        ).parameters,
        "argon2_ceiling": ceiling,
        "token_verification_in_process": token_cost,
        "revocation_check": asyncio.run(revocation_check_cost(settings.identity.token_version_cache_seconds)),
        "login": {"closed_loop": login_closed, "open_loop": login_open, "open_loop_rate": args.login_rate},
        "cached_read": read,
        "read_open_loop_rate": args.read_rate,
        "ratio_to_ceiling": {"login": login_ratio, "authenticated_read": auth_ratio},
        # Other work on the machine skews every figure; the load average says how much there was.
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }
    path = write_result("identity", {**result, "summary": headline(result)})
    print(f"wrote {path}")


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
