"""Offline quality of the recommendations: NDCG@10, recall@10 and catalogue coverage for random,
popularity, the real-time profile, the model and the blend, on synthetic users with planted tastes
(`staybook.personalization.evaluation`), sessions split by time, held-out bookings.

    .venv/bin/python bench/personalization_quality.py [--users 2000 --properties 2000 --seed 7]

Writes bench/results/personalization-quality.json (`summary.ndcg_at_10` per method). The ceiling is
the ideal ranking (NDCG 1.0); the target the issue sets is blend >= 1.2 x popularity.
"""

from __future__ import annotations

import argparse
import time

from bench.harness import write_result
from staybook.personalization import evaluation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--properties", type=int, default=2000)
    parser.add_argument("--cities", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    world = evaluation.generate(users=args.users, properties=args.properties, cities=args.cities, seed=args.seed)
    import asyncio

    figures = asyncio.run(evaluation.evaluate(world))
    seconds = round(time.perf_counter() - started, 1)
    methods = {m: figures[m] for m in evaluation.METHODS}
    print(f"{'method':<12} {'NDCG@10':>8} {'recall@10':>10} {'coverage':>9}")
    for name, row in methods.items():
        print(f"{name:<12} {row['ndcg_at_10']:>8.4f} {row['recall_at_10']:>10.4f} {row['coverage']:>9.4f}")
    popularity = methods["popularity"]["ndcg_at_10"]
    lift = round(methods["blend"]["ndcg_at_10"] / popularity, 2) if popularity else None
    print(f"blend / popularity NDCG@10: {lift} (target >= 1.2); ceiling (ideal ranking) 1.0")
    write_result(
        "personalization-quality",
        {
            "summary": {
                "ndcg_at_10": {m: row["ndcg_at_10"] for m, row in methods.items()},
                "recall_at_10": {m: row["recall_at_10"] for m, row in methods.items()},
                "coverage": {m: row["coverage"] for m, row in methods.items()},
                "blend_over_popularity_ndcg": lift,
                "ceiling_ndcg_at_10": 1.0,
            },
            "setup": {
                "users": args.users,
                "properties": args.properties,
                "cities": args.cities,
                "seed": args.seed,
                "users_evaluated": figures["users_evaluated"],
                "train_batches": figures["train_batches"],
                "split": "sessions before 80% of the 60-day span train; bookings after it are held out",
                "popularity": "trending (decayed) over all training signals, the same for every user",
                "seconds": seconds,
            },
            "methods": methods,
        },
    )


if __name__ == "__main__":
    main()
