"""Summarises a py-spy collapsed-stacks file: the share of samples per function (self and inclusive).

.venv/bin/python -m bench.profile_summary /tmp/booking.prof [--top 25]
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="", help="only inclusive entries whose frame contains this text")
    args = parser.parse_args()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in Path(args.file).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = stack.split(";")
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    print(f"{total} samples\n-- self --")
    for frame, samples in own.most_common(args.top):
        print(f"{100 * samples / total:6.1f}%  {frame}")
    print("-- inclusive --")
    shown = [(f, s) for f, s in inclusive.most_common() if args.match in f][: args.top]
    for frame, samples in shown:
        print(f"{100 * samples / total:6.1f}%  {frame}")


if __name__ == "__main__":
    main()
