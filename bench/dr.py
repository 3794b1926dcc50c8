"""The DR drill in each mode: kill -9 of the primary under booking load, then RPO, RTO and the invariants.

    .venv/bin/python -m bench.dr [--bookings 1000000] [--modes sync_standby,async_standby,wal_archive]

Each mode is its own run of `staybook dr drill` (src/staybook/recovery/drill.py): its own
PostgreSQL clusters on free ports, N confirmed bookings loaded before the base backup, an
open-loop hold-then-pay load through `staybook serve --with-worker` on JetStream (when NATS
answers at 127.0.0.1:4222), the primary killed at a random moment, recovery by promotion or
by restoring the archived WAL. The ceiling beside the RTO is the bare recovery step of the
same run (promotion, or restore + WAL replay): what the rest of the RTO costs is the API
restart and the first booking's round trip. The RPO's bound is the mode's own: 0 for a
synchronous standby, the replication delay for an asynchronous one, `archive_timeout` for
the archive alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from pathlib import Path

from bench.booking import NATS_URL, nats_reachable
from bench.harness import ratio, write_result
from staybook.recovery.drill import MODES, DrillOptions, result_dict, run_drill

TARGETS = {
    "sync_standby": {"rpo_bookings": 0, "rto_seconds": 60},
    "async_standby": {"rpo_seconds": 1, "rto_seconds": 60},
    "wal_archive": {"rpo_seconds": "archive_timeout", "rto_seconds": 300},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bookings", type=int, default=1_000_000)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--rate", type=float, default=10.0, help="booking flows per second during the drill")
    parser.add_argument("--archive-timeout", type=int, default=10)
    parser.add_argument("--base-dir", type=Path, default=Path("/tmp/staybook-dr-bench"))
    args = parser.parse_args()
    nats_url = NATS_URL if nats_reachable() else None
    runs: dict[str, dict] = {}
    summary: dict[str, dict] = {}
    for mode in args.modes.split(","):
        started = time.monotonic()
        load_before = os.getloadavg()
        result = asyncio.run(
            run_drill(
                DrillOptions(
                    mode=mode,
                    bookings=args.bookings,
                    base_dir=args.base_dir,
                    rate_per_s=args.rate,
                    archive_timeout_s=args.archive_timeout,
                    nats_url=nats_url,
                ),
                progress=lambda line, mode=mode: print(f"[{mode}] {line}", flush=True),
            )
        )
        document = result_dict(result)
        step = document["timings"].get("recovery_step_s", 0.0)
        document["ceiling"] = {
            "recovery_step_seconds": step,
            "rto_over_recovery_step": ratio(result.rto_seconds or 0.0, step),
        }
        document["target"] = TARGETS[mode] | ({"rpo_seconds": args.archive_timeout} if mode == "wal_archive" else {})
        document["load_average_before"] = [round(x, 2) for x in load_before]
        document["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
        document["wall_seconds"] = round(time.monotonic() - started, 1)
        document["bus"] = "nats" if nats_url else "in-process"
        runs[mode] = document
        summary[mode] = {
            key: document[key] for key in ("rpo_bookings", "rpo_seconds", "rto_seconds", "bookings_loaded",
                                           "invariants_ok")
        }  # fmt: skip
        print(
            f"{mode:<14} loaded {result.bookings_loaded:>8}  RPO {result.rpo_bookings} bookings / "
            f"{result.rpo_seconds:.3f} s  RTO {result.rto_seconds} s (recovery step {step:.1f} s, "
            f"ratio {document['ceiling']['rto_over_recovery_step']})  invariants {result.invariants_ok}",
            flush=True,
        )
    path = write_result(
        "dr", {"summary": summary, "archive_timeout_seconds": args.archive_timeout, "rate_per_s": args.rate,
               "runs": runs}
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
