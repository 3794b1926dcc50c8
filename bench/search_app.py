"""The staybook API for the search benchmark: each uvicorn worker starts from an index snapshot
(bench/search.py writes it) instead of reading 1M properties from a database.

    uvicorn --factory bench.search_app:create   (BENCH_SEARCH_SNAPSHOT=<dir>)
"""

from __future__ import annotations

import contextlib
import gc
import os
import pickle
from pathlib import Path

import numpy as np

from staybook.app import create_app
from staybook.search import bootstrap
from staybook.search.service import SearchDeps


def load_snapshot(directory: Path):
    with open(directory / "index.pickle", "rb") as source:
        index = pickle.load(source)  # noqa: S301 (our own file, written by bench/search.py)
    # Copy-on-write maps: the workers share the matrices in the page cache. Plain ndarray views:
    # indexing a np.memmap wraps every result in a memmap (microseconds per query for nothing).
    index.units = np.load(directory / "units.npy", mmap_mode="c").view(np.ndarray)
    index.price_codes = np.load(directory / "price_codes.npy", mmap_mode="c").view(np.ndarray)
    return index


def create():
    snapshot = Path(os.environ["BENCH_SEARCH_SNAPSHOT"])

    @contextlib.asynccontextmanager
    async def lifespan(runtime):
        deps = SearchDeps(runtime, index=load_snapshot(snapshot))  # the rating ranker, as in production
        gc.collect()
        gc.freeze()  # as the service does after a build
        yield deps

    bootstrap.lifespan = lifespan
    return create_app()
