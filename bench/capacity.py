"""docs/capacity.md from the measured figures in bench/results/: the platform's peak in cores, pods,
stores and dollars.

    .venv/bin/python -m bench.capacity          # rewrites docs/capacity.md

Every input is read from a result file and named with its source; every step that is a model
(utilisation headroom, sizes per row, unit prices) is a constant below, and the document marks
which figures are measured and which are modelled. Re-run a benchmark, then this, and the plan
follows the figures.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
OUTPUT = ROOT / "docs" / "capacity.md"

# The platform's peak (DESIGN.md and the performance issue).
PEAK = {
    "requests_per_s": 100_000,
    "bookings_per_min": 5_000,
    "searches_per_min": 50_000,
    "signals_per_s": 1_000_000,
    "daily_users": 10_000_000,
    "properties": 5_000_000,
    "bookings_per_year": 100_000_000,
}

# Model constants (not measurements).
TARGET_UTILISATION = 0.6  # cores busy at peak, leaving room for a zone's loss and bursts
API_POD_CORES, API_POD_MEMORY_GB = 2, 2.0  # each pod: `staybook serve --workers 2`
WORKER_POD_CORES, WORKER_POD_MEMORY_GB = 1, 1.0
NODE_CORES, NODE_MEMORY_GB = 8, 32  # m6i.2xlarge
BOOKING_ROW_BYTES = 2_500  # booking + saga + payment + outbox/inbox rows and indexes, per booking
WRITES_PER_BOOKING = 12  # hold, nights (3), booking, payment, saga steps, outbox, inbox rows
PROFILE_BYTES_PER_ACTIVE_USER = 6_000  # six sorted sets of up to 200 members, in Redis
SESSION_BYTES_PER_USER = 400  # refresh token family, token version, rate-limit windows
SIGNAL_BYTES_ON_STREAM = 10  # batched and lz4-compressed: bytes per signal (bench/personalization)
STREAM_RETENTION_DAYS = 7
SEARCH_REPLICA_MEMORY_GB = 32  # r6i.xlarge-sized replicas for the in-process index

# Unit prices, USD per hour (on-demand list prices; the first two are the platform plan's own).
PRICE = {
    "m6i.2xlarge": 0.384,
    "db.r6g.4xlarge": 1.04,
    "cache.r6g.xlarge": 0.411,
    "r6i.xlarge": 0.252,
    "nat_gateway": 0.045,
    "eks_control_plane": 0.10,
}
AURORA_STORAGE_GB_MONTH = 0.10
AURORA_IO_PER_MILLION = 0.20
S3_GB_MONTH = 0.023
HOURS_PER_MONTH = 730
PLAN_ESTIMATE_PER_MONTH = 28_000


def _load(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def inputs() -> dict:
    """The measured per-operation costs, each with where it came from."""
    platform, booking = _load("platform"), _load("booking")
    personalization, search = _load("personalization"), _load("search-at-platform-peak")
    mix = platform.get("mix", {})
    mix_cpu = mix.get("cpu_ms_per_request", {})
    alone = platform.get("cpu_ms_per_operation_alone", {})
    sustained = max(
        (v["sustained"] for v in booking.get("variants", {}).values() if v.get("sustained")),
        key=lambda s: s["confirmed_per_s"],
        default=None,
    )
    booking_cpu = (
        {k: v["ms_per_confirmed_booking"] for k, v in sustained["cpu_by_process"].items()} if sustained else {}
    )
    uncached = search.get("memory", {}).get("http_uncached", {}).get("closed_loop", {})
    cpu_per_signal = personalization.get("ingest", {}).get("cpu_us_per_signal_closed_loop", {})
    return {
        "api_ms_per_request": (mix_cpu.get("api"), "bench/results/platform.json mix, API workers"),
        "worker_ms_per_request": (mix_cpu.get("worker"), "bench/results/platform.json mix, worker"),
        "booking_api_ms": (booking_cpu.get("api", alone.get("booking")), "bench/results/booking.json sustained step"),
        "booking_worker_ms": (booking_cpu.get("worker"), "bench/results/booking.json sustained step"),
        "booking_postgres_ms": (booking_cpu.get("postgres"), "bench/results/booking.json sustained step"),
        # Two API workers saturated: the cores they had over the answers per second (an upper bound).
        "search_ms": (
            round(2000.0 / uncached["throughput_rps"], 3) if uncached.get("throughput_rps") else None,
            "bench/results/search-at-platform-peak.json, 1M properties, uncached, 2 cores / closed-loop rate",
        ),
        "search_index_gb_per_million": (
            round(search.get("memory", {}).get("rss_mb", 0) / 1024, 2) or None,
            "bench/results/search-at-platform-peak.json, RSS of the index at 1M properties",
        ),
        "signal_api_us": (cpu_per_signal.get("api"), "bench/results/personalization.json ingest"),
        "signal_worker_us": (cpu_per_signal.get("worker"), "bench/results/personalization.json ingest"),
        "signal_nats_us": (cpu_per_signal.get("nats"), "bench/results/personalization.json ingest"),
        "mix_rps_on_two_cores": (platform.get("summary", {}).get("mix_rps"), "bench/results/platform.json summary"),
    }


def plan(measured: dict) -> dict:
    value = {k: (v if v is not None else 0.0) for k, (v, _) in measured.items()}
    bookings_per_s = PEAK["bookings_per_min"] / 60
    searches_per_s = PEAK["searches_per_min"] / 60
    # API: the whole request rate at the mix's cost per request; bookings and searches are part of it.
    api_cores = PEAK["requests_per_s"] * value["api_ms_per_request"] / 1000 / TARGET_UTILISATION
    worker_cores = (
        PEAK["requests_per_s"] * value["worker_ms_per_request"] / 1000
        + bookings_per_s * value["booking_worker_ms"] / 1000
    ) / TARGET_UTILISATION
    signal_api_cores = PEAK["signals_per_s"] * value["signal_api_us"] / 1e6 / TARGET_UTILISATION
    signal_worker_cores = PEAK["signals_per_s"] * value["signal_worker_us"] / 1e6 / TARGET_UTILISATION
    nats_cores = PEAK["signals_per_s"] * value["signal_nats_us"] / 1e6 / TARGET_UTILISATION
    api_pods = math.ceil((api_cores + signal_api_cores) / API_POD_CORES)
    worker_pods = math.ceil((worker_cores + signal_worker_cores) / WORKER_POD_CORES)
    app_cores = api_pods * API_POD_CORES + worker_pods * WORKER_POD_CORES
    app_memory = api_pods * API_POD_MEMORY_GB + worker_pods * WORKER_POD_MEMORY_GB
    nodes = math.ceil(max(app_cores / NODE_CORES, app_memory / NODE_MEMORY_GB) * 1.1)  # daemonsets, bin packing
    # PostgreSQL: writes come from bookings; reads are served from caches and replicas.
    pg_writes_per_s = bookings_per_s * WRITES_PER_BOOKING
    pg_growth_gb_year = PEAK["bookings_per_year"] * BOOKING_ROW_BYTES / 1e9
    pg_cores = bookings_per_s * value["booking_postgres_ms"] / 1000 / TARGET_UTILISATION
    # Redis: a profile per active user of the day and a session per user.
    redis_gb = PEAK["daily_users"] * (PROFILE_BYTES_PER_ACTIVE_USER + SESSION_BYTES_PER_USER) / 1e9
    # NATS: the signal stream dominates.
    stream_mb_s = PEAK["signals_per_s"] * SIGNAL_BYTES_ON_STREAM / 1e6
    stream_tb = stream_mb_s * 86_400 * STREAM_RETENTION_DAYS / 1e6
    # Search: the index per replica at 5M properties; shards when one replica's memory is not enough.
    index_gb = value["search_index_gb_per_million"] * PEAK["properties"] / 1e6
    geo_shards = max(1, math.ceil(index_gb / (SEARCH_REPLICA_MEMORY_GB * 0.7)))
    search_cores = searches_per_s * value["search_ms"] / 1000 / TARGET_UTILISATION
    search_replicas_per_shard = max(3, math.ceil(search_cores / 4))  # 4 vCPU each; 3 for the zones
    monthly = {
        "EKS nodes (m6i.2xlarge)": nodes * PRICE["m6i.2xlarge"] * HOURS_PER_MONTH,
        "Aurora PostgreSQL (1 writer + 2 readers, db.r6g.4xlarge)": 3 * PRICE["db.r6g.4xlarge"] * HOURS_PER_MONTH,
        "Aurora storage and I/O": pg_growth_gb_year * AURORA_STORAGE_GB_MONTH
        + pg_writes_per_s * 86_400 * 30 / 1e6 * AURORA_IO_PER_MILLION,
        "ElastiCache Redis (3 shards x 3 nodes, cache.r6g.xlarge)": 9 * PRICE["cache.r6g.xlarge"] * HOURS_PER_MONTH,
        "search replicas (r6i.xlarge)": geo_shards * search_replicas_per_shard * PRICE["r6i.xlarge"] * HOURS_PER_MONTH,
        "NATS JetStream storage (gp3, 3 replicas)": stream_tb * 1000 * 3 * 0.08,
        "S3 media and backups (10 TB)": 10_000 * S3_GB_MONTH,
        "NAT gateways (3)": 3 * PRICE["nat_gateway"] * HOURS_PER_MONTH,
        "EKS control plane": PRICE["eks_control_plane"] * HOURS_PER_MONTH,
    }
    return {
        "api_cores": api_cores,
        "worker_cores": worker_cores,
        "signal_api_cores": signal_api_cores,
        "signal_worker_cores": signal_worker_cores,
        "nats_cores": nats_cores,
        "api_pods": api_pods,
        "worker_pods": worker_pods,
        "app_cores": app_cores,
        "app_memory_gb": app_memory,
        "nodes": nodes,
        "pg_writes_per_s": pg_writes_per_s,
        "pg_growth_gb_year": pg_growth_gb_year,
        "pg_cores": pg_cores,
        "redis_gb": redis_gb,
        "stream_mb_s": stream_mb_s,
        "stream_tb": stream_tb,
        "index_gb": index_gb,
        "geo_shards": geo_shards,
        "search_cores": search_cores,
        "search_replicas_per_shard": search_replicas_per_shard,
        "monthly": monthly,
        "monthly_total": sum(monthly.values()),
    }


def render(measured: dict, figures: dict) -> str:
    f = figures
    lines = [
        "# Capacity and cost at the platform's peak",
        "",
        f"Generated by `bench/capacity.py` on {datetime.now(UTC):%Y-%m-%d} from `bench/results/`; do not edit by "
        "hand: re-run the benchmarks, then `.venv/bin/python -m bench.capacity`.",
        "",
        "**Measured** figures come from a result file (named beside each). **Model** figures are constants in "
        "`bench/capacity.py` (headroom, row sizes, unit prices): they are estimates, not measurements. All "
        "benchmarks ran on one 2-core machine shared with other work, so the per-core costs are upper bounds.",
        "",
        "## Inputs (measured)",
        "",
        "| cost | value | source |",
        "|---|---|---|",
    ]
    units = {
        "api_ms_per_request": "CPU-ms per request",
        "worker_ms_per_request": "CPU-ms per request",
        "booking_api_ms": "CPU-ms per confirmed booking",
        "booking_worker_ms": "CPU-ms per confirmed booking",
        "booking_postgres_ms": "CPU-ms per confirmed booking",
        "search_ms": "CPU-ms per search",
        "search_index_gb_per_million": "GB per 1M properties",
        "signal_api_us": "CPU-µs per signal",
        "signal_worker_us": "CPU-µs per signal",
        "signal_nats_us": "CPU-µs per signal",
        "mix_rps_on_two_cores": "requests/s",
    }
    for key, (value, source) in measured.items():
        shown = "not measured" if value is None else f"{value:,} {units[key]}"
        lines.append(f"| {key} | {shown} | {source} |")
    lines += [
        "",
        "## The peak",
        "",
        ", ".join(f"{k.replace('_', ' ')}: {v:,}" for k, v in PEAK.items()) + ".",
        "",
        "## Compute",
        "",
        f"At {TARGET_UTILISATION:.0%} target utilisation (model):",
        "",
        "| part | cores | how |",
        "|---|---|---|",
        f"| API, requests | {f['api_cores']:,.0f} | {PEAK['requests_per_s']:,} req/s × api_ms_per_request |",
        f"| API, signal ingest | {f['signal_api_cores']:,.0f} | {PEAK['signals_per_s']:,} signals/s × signal_api_us |",
        f"| worker, requests' events and bookings | {f['worker_cores']:,.0f} | req/s × worker_ms_per_request "
        "+ bookings/s × booking_worker_ms |",
        f"| worker, signal aggregation | {f['signal_worker_cores']:,.0f} | signals/s × signal_worker_us |",
        f"| NATS | {f['nats_cores']:,.0f} | signals/s × signal_nats_us |",
        f"| search (inside the API cores above) | {f['search_cores']:,.1f} | "
        f"{PEAK['searches_per_min'] / 60:,.0f} searches/s × search_ms |",
        "",
        f"- **API pods**: {f['api_pods']:,} ({API_POD_CORES} cores, {API_POD_MEMORY_GB:g} GB each: "
        "`staybook serve --workers 2`).",
        f"- **Worker pods**: {f['worker_pods']:,} ({WORKER_POD_CORES} core, {WORKER_POD_MEMORY_GB:g} GB each).",
        f"- **Cores and memory**: {f['app_cores']:,} cores, {f['app_memory_gb']:,.0f} GB; "
        f"**{f['nodes']:,} m6i.2xlarge nodes** ({NODE_CORES} vCPU, {NODE_MEMORY_GB} GB; +10% for daemonsets "
        "and packing).",
        "",
        "## Stores",
        "",
        f"- **PostgreSQL write load**: {f['pg_writes_per_s']:,.0f} row writes/s "
        f"({PEAK['bookings_per_min']:,} bookings/min × {WRITES_PER_BOOKING} rows, model), about as many write "
        f"IOPS before group commit; {f['pg_cores']:,.1f} cores of backend CPU (measured per booking). Size "
        f"growth {f['pg_growth_gb_year']:,.0f} GB/year for {PEAK['bookings_per_year']:,} bookings "
        f"({BOOKING_ROW_BYTES:,} bytes per booking with its rows and indexes, model). One writer holds it; "
        "reads that may lag go to the two readers.",
        f"- **Redis memory**: {f['redis_gb']:,.0f} GB for {PEAK['daily_users']:,} daily users "
        f"({PROFILE_BYTES_PER_ACTIVE_USER:,} bytes of profile + {SESSION_BYTES_PER_USER} of sessions and limits "
        "each, model): 3 shards × 3 nodes of cache.r6g.xlarge (26 GB each) hold it with room.",
        f"- **NATS**: {f['stream_mb_s']:,.0f} MB/s on the signal stream ({SIGNAL_BYTES_ON_STREAM} bytes per "
        f"signal batched, model); {f['stream_tb']:,.1f} TB at {STREAM_RETENTION_DAYS} days' retention per "
        "replica. The context streams are small beside it.",
        f"- **Search**: {f['index_gb']:,.1f} GB of index for {PEAK['properties']:,} properties (measured per "
        f"1M, scaled linearly); **{f['geo_shards']} geo shard(s)** of {SEARCH_REPLICA_MEMORY_GB} GB replicas "
        f"at 70% memory, **{f['search_replicas_per_shard']} replicas each** (3 zones; CPU needs "
        f"{f['search_cores']:,.1f} cores).",
        "",
        "## Monthly cost (model: on-demand list prices; the first two are the platform plan's own)",
        "",
        "| item | USD/month |",
        "|---|---|",
    ]
    lines += [f"| {item} | {cost:,.0f} |" for item, cost in f["monthly"].items()]
    lines += [
        f"| **total** | **{f['monthly_total']:,.0f}** |",
        "",
        f"The platform plan estimates about ${PLAN_ESTIMATE_PER_MONTH:,}/month: this model comes to "
        f"{f['monthly_total'] / PLAN_ESTIMATE_PER_MONTH:.1f}× that. Data transfer, support and reserved-instance "
        "discounts are left out. The API's cost per request dominates: every millisecond of CPU per request "
        f"is {PEAK['requests_per_s'] / 1000 / TARGET_UTILISATION:,.0f} cores at the peak.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    measured = inputs()
    OUTPUT.write_text(render(measured, plan(measured)))
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
