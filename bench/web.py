"""The web pages under load: server time per page (home, results, property, checkout) beside the
JSON API for the same data, page weight, and the results page's time to first byte.

    flock /work/wt/bench.lock .venv/bin/python -m bench.web [--rate 50] [--results-rate 200] [--properties 500]

Topology, as an operator runs it: `staybook serve --workers 2` plus one `staybook worker`, in
production mode, on PostgreSQL (a database of this run), Redis (a key prefix of this run) and
NATS JetStream (a namespace of this run). Data: `staybook seed --properties N` (real cities).
Pages are fetched as a signed-in browser fetches them: session and CSRF cookies, gzip.

For each page and its JSON counterpart:
- the ceiling: a closed loop (32 connections) for a few seconds, pages/s at saturation;
- server time: an open loop at `--rate` (the results page also at `--results-rate`, the
  TTFB target's rate), latency from the scheduled send (coordinated omission corrected):
  time to the response's head (TTFB) and to its last byte;
- CPU by process from /proc over each open-loop step (API workers, worker, this database's
  PostgreSQL backends, Redis, NATS) and the load generator's own (a child process: RUSAGE_CHILDREN),
  and from it the CPU milliseconds per request (API workers; all server processes), the figure
  that holds on a machine other work shares.

The JSON counterparts: results -> GET /api/v1/search (the same query); property -> GET
/api/v1/properties/{id} and its availability for the stay (the page shows both; measured as the
availability call, the heavier); checkout -> the availability of the stay (the offer the page
shows, for a signed-in guest); home -> /api/v1/search/suggest (the only data the page asks for,
as the visitor types).

Page weight: the page's HTML plus every stylesheet and script it links, as sent with
`Accept-Encoding: gzip` (compressed bytes on the wire), photos and map tiles excluded.
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import re
import resource
import subprocess
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlencode

import httpx
import psycopg

from bench.booking import ADMIN_URL, NATS_URL, _pid_cpu, _streams_deleted, _terminated, drained, nats_reachable
from bench.harness import Server, load, ratio, staybook_command, write_result
from bench.platform import REDIS_URL, CpuMeter

DATABASE = "staybook_bench_web"
PASSWORD = "bench-web-pass-42"
TTFB_TARGET_MS = 50.0
TTFB_TARGET_RATE = 200.0
WEIGHT_TARGET_KB = 100.0


class WebCpuMeter(CpuMeter):
    """bench.platform's meter, counting the PostgreSQL backends of this benchmark's database."""

    def snapshot(self) -> dict:
        figures = super().snapshot()
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            pids = [r[0] for r in conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (DATABASE,))]
        figures["postgres"] = {pid: _pid_cpu(pid) or 0.0 for pid in pids}
        return figures


def prepare_database(properties: int) -> dict:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{DATABASE}"
    env = {**os.environ, "STAYBOOK_DATABASE_URL": url, "STAYBOOK_ENVIRONMENT": "development"}
    subprocess.run(staybook_command("migrate"), env=env, check=True, capture_output=True)  # noqa: S603
    subprocess.run(  # noqa: S603
        staybook_command("seed", "--properties", str(properties)), env=env, check=True, capture_output=True
    )
    with psycopg.connect(url, autocommit=True) as conn:
        cities = [
            r[0] for r in conn.execute("SELECT city FROM properties GROUP BY city ORDER BY count(*) DESC LIMIT 20")
        ]
        room_types = [
            (str(rt), str(p))
            for rt, p in conn.execute(
                "SELECT rt.id, rt.property_id FROM room_types rt JOIN properties p ON p.id = rt.property_id "
                "WHERE rt.status = 'active' AND p.status = 'active' ORDER BY rt.id"
            )
        ]
    return {"url": url, "cities": cities, "room_types": room_types}


def stays(count: int) -> list[tuple[str, str]]:
    today = date.today()
    out = []
    for index in range(count):
        check_in = today + timedelta(days=20 + 5 * (index % 10))
        out.append((check_in.isoformat(), (check_in + timedelta(days=2 + index % 3)).isoformat()))
    return out


def request_sets(data: dict, cookie: str, bearer: str) -> dict[str, dict[str, list[dict]]]:
    """For each page: the page's requests and its JSON counterpart's, cycled by the load generator."""
    rng = random.Random(7)
    page_headers = {"Cookie": cookie, "Accept-Encoding": "gzip", "Accept": "text/html"}
    api_headers = {"Authorization": f"Bearer {bearer}", "Accept-Encoding": "gzip"}
    dates = stays(10)
    searches = [
        {"city": city, "check_in": check_in, "check_out": check_out, "guests": 2}
        for city in data["cities"]
        for check_in, check_out in dates[:5]
    ]
    rng.shuffle(searches)
    sample = rng.sample(data["room_types"], min(200, len(data["room_types"])))
    stays_of = [(rt, p, *dates[i % len(dates)]) for i, (rt, p) in enumerate(sample)]

    def get(path: str, headers: dict) -> dict:
        return {"method": "GET", "path": path, "headers": headers}

    prefixes = ["Par", "Ber", "Lon", "Ams", "Rom", "Bar", "Lis", "Mad", "Vie", "Pra"]
    return {
        "home": {
            "page": [get("/", page_headers)],
            "api": [get("/api/v1/search/suggest?" + urlencode({"q": q}), api_headers) for q in prefixes],
        },
        "results": {
            "page": [get("/results?" + urlencode(s), page_headers) for s in searches],
            "api": [get("/api/v1/search?" + urlencode(s), api_headers) for s in searches],
        },
        "property": {
            "page": [
                get(f"/properties/{p}?" + urlencode({"check_in": ci, "check_out": co, "guests": 2}), page_headers)
                for _, p, ci, co in stays_of
            ],
            "api": [
                get(
                    f"/api/v1/properties/{p}/availability?" + urlencode({"check_in": ci, "check_out": co, "guests": 2}),
                    api_headers,
                )  # fmt: skip
                for _, p, ci, co in stays_of
            ],
        },
        "checkout": {
            "page": [
                get(
                    "/checkout?" + urlencode({"room_type_id": rt, "check_in": ci, "check_out": co, "guests": 2}),
                    page_headers,
                )  # fmt: skip
                for rt, _, ci, co in stays_of
            ],
            "api": [
                get(
                    f"/api/v1/properties/{p}/availability?" + urlencode({"check_in": ci, "check_out": co, "guests": 2}),
                    api_headers,
                )  # fmt: skip
                for _, p, ci, co in stays_of
            ],
        },
    }


ASSET = re.compile(rb'<(?:link[^>]+rel="stylesheet"[^>]+href|script[^>]+src)="([^"]+)"')


def page_weight(client: httpx.Client, path: str, cookie: str) -> dict:
    """Compressed bytes of the page's HTML and of every stylesheet and script it links."""
    headers = {"Cookie": cookie, "Accept-Encoding": "gzip"}

    def wire(url: str) -> tuple[int, int, bytes]:
        response = client.get(url, headers=headers)
        response.raise_for_status()
        return response.num_bytes_downloaded, len(response.content), response.content

    html_wire, html_plain, html = wire(path)
    assets = {}
    for href in ASSET.findall(html):
        url = href.decode()
        if url.startswith("/"):
            sent, plain, _ = wire(url)
            assets[url.split("?")[0]] = {"compressed_bytes": sent, "bytes": plain}
    total = html_wire + sum(a["compressed_bytes"] for a in assets.values())
    return {
        "html": {"compressed_bytes": html_wire, "bytes": html_plain},
        "assets": assets,
        "compressed_kb": round(total / 1024, 1),
        "uncompressed_kb": round((html_plain + sum(a["bytes"] for a in assets.values())) / 1024, 1),
    }


def measured(server: Server, meter: CpuMeter, requests: list[dict], rate: float, duration: float) -> dict:
    before, children_before, started = meter.snapshot(), _children_cpu(), time.monotonic()
    figures = load(server.url, requests=requests, rate=rate, duration=duration, connections=64)
    seconds = time.monotonic() - started
    figures["cpu"] = CpuMeter.delta(before, meter.snapshot(), seconds, _children_cpu() - children_before)
    return figures


def ceiling_step(server: Server, meter: CpuMeter, requests: list[dict], duration: float) -> dict:
    """The closed loop, with the CPU it took: the server processes' and the whole machine's (a
    ceiling with the servers far from busy waits on something; one with the machine busy is
    other work's share of the cores)."""
    before, children_before, machine_before, started = meter.snapshot(), _children_cpu(), _machine(), time.monotonic()
    figures = load(server.url, requests=requests, rate=0, duration=duration, connections=32)
    seconds = time.monotonic() - started
    figures["cpu"] = CpuMeter.delta(before, meter.snapshot(), seconds, _children_cpu() - children_before)
    (total_before, idle_before), (total_after, idle_after) = machine_before, _machine()
    ticks = total_after - total_before
    figures["cpu"]["machine_cores_busy"] = round((os.cpu_count() or 1) * (1 - (idle_after - idle_before) / ticks), 2)
    return figures


def _machine() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of every core, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


SERVER_PROCESSES = ("api", "worker", "postgres", "redis", "nats")


def cpu_ms_per_request(figures: dict) -> dict:
    """CPU milliseconds a request cost: the API workers' own, and every server process's (the API,
    the worker, this database's PostgreSQL backends, Redis, NATS). From /proc, so it holds while
    other sessions load the machine, where latency does not."""
    busy, rate = figures["cpu"]["cores_busy"], figures["throughput_rps"]
    if not rate:
        return {"api": None, "servers": None}
    return {
        "api": round(1000 * busy.get("api", 0.0) / rate, 2),
        "servers": round(1000 * sum(busy.get(name, 0.0) for name in SERVER_PROCESSES) / rate, 2),
    }


def brief(figures: dict) -> dict:
    return {
        "cpu_ms_per_request": cpu_ms_per_request(figures),
        "rate": figures["target_rate"],
        "throughput_rps": figures["throughput_rps"],
        "ttfb_ms": figures["ttfb_ms"],
        "latency_ms": {k: figures["latency_ms"][k] for k in ("p50", "p99", "p99.9")},
        "errors": figures["errors"] + figures["unanswered"],
        "statuses": figures["statuses"],
        "cpu_cores_busy": figures["cpu"]["cores_busy"],
        "load_generator_share_of_cpu_used": figures["cpu"]["load_generator_share_of_cpu_used"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50, help="pages/s of each page's open loop")
    parser.add_argument("--results-rate", type=float, default=TTFB_TARGET_RATE, help="the results page's own run")
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--ceiling-duration", type=float, default=6)
    parser.add_argument("--properties", type=int, default=500)
    parser.add_argument("--port", type=int, default=24810)
    args = parser.parse_args()
    if not nats_reachable():
        raise SystemExit(f"NATS is not reachable at {NATS_URL}")
    load_before = os.getloadavg()
    started = time.monotonic()
    data = prepare_database(args.properties)
    print(f"seeded {args.properties} properties in {time.monotonic() - started:.0f} s", flush=True)
    run_id = uuid.uuid4().hex[:10]
    namespace = f"web{run_id}"
    env = {
        "STAYBOOK_SECRET_KEY": uuid.uuid4().hex + uuid.uuid4().hex,
        "STAYBOOK_PAYMENTS__WEBHOOK_SECRET": uuid.uuid4().hex,
        "STAYBOOK_IDENTITY__PII_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
        "STAYBOOK_DATABASE_URL": data["url"].replace("postgresql://", "postgresql+asyncpg://"),
        "STAYBOOK_ENVIRONMENT": "production",
        "STAYBOOK_REDIS_URL": REDIS_URL,
        "STAYBOOK_REDIS_KEY_PREFIX": f"web{run_id}:",
        "STAYBOOK_NATS_URL": NATS_URL,
        "STAYBOOK_BUS_NAMESPACE": namespace,
        "STAYBOOK_HTTP_PORT": str(args.port),
        "STAYBOOK_LOG_LEVEL": "WARNING",
        "STAYBOOK_GATEWAY__RATE_LIMIT_REQUESTS": "100000000",
        "STAYBOOK_INVENTORY__HORIZON_DAYS": "90",
    }
    worker_log = Path(f"/tmp/staybook-bench-web-worker-{run_id}.log")
    worker = subprocess.Popen(  # noqa: S603
        staybook_command("worker"), env={**os.environ, **env}, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT
    )
    command = staybook_command("serve", "--port", "{port}", "--workers", "2")
    with (
        _streams_deleted(namespace),
        _terminated(worker),
        Server(command, env=env, port=args.port, startup_timeout=600) as server,
    ):
        email = f"web.{run_id}@example.com"
        with httpx.Client(base_url=server.url, timeout=30) as client:
            client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "Web Bench"})
            tokens = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
            tokens.raise_for_status()
            access = tokens.json()["access_token"]
            cookie = f"sb_session={access}; sb_csrf={uuid.uuid4().hex}{uuid.uuid4().hex}"
            print(f"worker idle after {drained(data['url'], worker.pid)} s", flush=True)
            sets = request_sets(data, cookie, access)
            # Checkout pages of stays that can be booked (a sold-out stay is a different, shorter page).
            bookable = [
                index
                for index, spec in enumerate(sets["checkout"]["page"])
                if client.get(spec["path"], headers=spec["headers"]).status_code == 200
            ]
            for kind in ("page", "api"):
                sets["checkout"][kind] = [sets["checkout"][kind][index] for index in bookable]
            print(f"{len(bookable)} bookable checkout stays", flush=True)
            for name, pair in sets.items():  # every page answers as a page before it is timed
                for kind, requests in pair.items():
                    answer = client.get(requests[0]["path"], headers=requests[0]["headers"])
                    assert answer.status_code == 200, (name, kind, answer.status_code, answer.text[:500])
                    if kind == "page":
                        assert "text/html" in answer.headers["content-type"], (name, answer.headers)
            weights = {name: page_weight(client, pair["page"][0]["path"], cookie) for name, pair in sets.items()}
        for name, weight in weights.items():
            print(f"{name:<9} page weight {weight['compressed_kb']:>6.1f} KB compressed "
                  f"({weight['uncompressed_kb']:.1f} KB plain)", flush=True)  # fmt: skip
        meter = WebCpuMeter(server.process.pid, worker.pid)
        pages: dict[str, dict] = {}
        for name, pair in sets.items():
            entry: dict = {}
            for kind, requests in pair.items():
                ceiling = ceiling_step(server, meter, requests, args.ceiling_duration)
                open_loop = measured(server, meter, requests, args.rate, args.duration)
                entry[kind] = {
                    "ceiling_rps": ceiling["throughput_rps"],
                    "ceiling_latency_ms": ceiling["latency_ms"],
                    "ceiling_cpu_cores_busy": {
                        **ceiling["cpu"]["cores_busy"],
                        "machine": ceiling["cpu"]["machine_cores_busy"],
                    },  # fmt: skip
                    "open_loop": brief(open_loop),
                    "rate_to_ceiling": ratio(args.rate, ceiling["throughput_rps"]),
                }
                print(f"{name:<9} {kind:<4} ceiling {ceiling['throughput_rps']:>7.1f}/s "
                      f"(API {ceiling['cpu']['cores_busy']['api']:.2f} of machine "
                      f"{ceiling['cpu']['machine_cores_busy']:.2f} cores busy); at {args.rate:g}/s "
                      f"ttfb p50 {open_loop['ttfb_ms']['p50']:.1f} p99 {open_loop['ttfb_ms']['p99']:.1f} ms, "
                      f"last byte p99 {open_loop['latency_ms']['p99']:.1f} ms, "
                      f"API CPU {cpu_ms_per_request(open_loop)['api']} ms/request, errors "
                      f"{open_loop['errors'] + open_loop['unanswered']}", flush=True)  # fmt: skip
            entry["page_to_api_p99"] = ratio(entry["page"]["open_loop"]["latency_ms"]["p99"],
                                             entry["api"]["open_loop"]["latency_ms"]["p99"])  # fmt: skip
            entry["page_to_api_ceiling"] = ratio(entry["page"]["ceiling_rps"], entry["api"]["ceiling_rps"])
            entry["weight"] = weights[name]
            pages[name] = entry
        target = measured(server, meter, sets["results"]["page"], args.results_rate, args.duration)
        failed = target["errors"] + target["unanswered"]
        print(f"results at {args.results_rate:g}/s: ttfb p99 {target['ttfb_ms']['p99']:.1f} ms "
              f"(target < {TTFB_TARGET_MS:g} ms), errors {failed}", flush=True)  # fmt: skip
    summary = {
        "results_ttfb_p99_ms": target["ttfb_ms"]["p99"],
        "results_rate": args.results_rate,
        "results_ttfb_target_met": target["ttfb_ms"]["p99"] < TTFB_TARGET_MS
        and target["errors"] + target["unanswered"] == 0,
        "page_weight_kb": {name: w["compressed_kb"] for name, w in weights.items()},
        "page_weight_target_met": all(w["compressed_kb"] < WEIGHT_TARGET_KB for w in weights.values()),
        "page_p99_ms_at_rate": {name: p["page"]["open_loop"]["latency_ms"]["p99"] for name, p in pages.items()},
        "api_p99_ms_at_rate": {name: p["api"]["open_loop"]["latency_ms"]["p99"] for name, p in pages.items()},
        "page_ceiling_rps": {name: p["page"]["ceiling_rps"] for name, p in pages.items()},
        "page_api_cpu_ms": {name: p["page"]["open_loop"]["cpu_ms_per_request"]["api"] for name, p in pages.items()},
        "json_api_cpu_ms": {name: p["api"]["open_loop"]["cpu_ms_per_request"]["api"] for name, p in pages.items()},
        "results_api_cpu_ms_at_target_rate": cpu_ms_per_request(target)["api"],
        "rate": args.rate,
    }
    path = write_result(
        "web",
        {
            "method": __doc__.split("\n\n", 1)[1].strip(),
            "topology": "staybook serve --workers 2 + staybook worker, production mode, PostgreSQL, Redis, NATS",
            "properties": args.properties,
            "shared_machine": "other sessions' work ran on the same 2 cores; load averages below",
            "load_average_before": [round(v, 2) for v in load_before],
            "summary": summary,
            "pages": pages,
            "results_at_target_rate": brief(target),
            "targets": {
                "results_ttfb_p99_ms": TTFB_TARGET_MS,
                "results_rate": TTFB_TARGET_RATE,
                "page_weight_kb": WEIGHT_TARGET_KB,
            },  # fmt: skip
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
