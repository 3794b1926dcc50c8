"""The batch layer: an implicit-feedback model fitted on the archive, and content vectors of properties.

- Collaborative: ALS on confidence-weighted interactions (`implicit`, Hu, Koren
  & Volinsky 2008): who viewed, clicked, wishlisted, shared, lingered on and
  booked what, weighted as `signals.KIND_WEIGHTS` says and decayed by age.
- Content: TF-IDF over hashed tokens of a property's name, type, city,
  description and amenities, L2-normalised, so cosine similarity is a dot
  product. It serves "similar stays" and properties nobody has touched yet.

A trained model is a version directory under `model_dir` (`<UTC time>-<short id>/`
with `model.npz`, `content.npz` and `manifest.json`) and `CURRENT` names the one
to serve, replaced atomically; API processes notice a new `CURRENT` and load it
without a restart.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from staybook.personalization.properties import PropertyFact
from staybook.personalization.signals import KIND_WEIGHTS

CONTENT_DIMENSIONS = 2**14
MODEL_HALF_LIFE_DAYS = 30.0
VERSIONS_KEPT = 3
_TOKEN = re.compile(r"[^\W\d_]{2,}", re.UNICODE)


# ---------------------------------------------------------------------------- content vectors


def _tokens(fact: PropertyFact) -> list[str]:
    words = [f"w:{word}" for word in _TOKEN.findall(f"{fact.name} {fact.description}".casefold())]
    return [
        *words,
        f"type:{fact.property_type}",
        f"city:{fact.city.casefold()}",
        f"country:{fact.country}",
        # Amenities and type say more about a stay than a word of its description.
        *(f"amenity:{a}" for a in fact.amenities for _ in range(3)),
        f"type:{fact.property_type}",
    ]


def _bucket(token: str) -> int:
    return zlib.crc32(token.encode()) % CONTENT_DIMENSIONS


def content_vectors(facts: list[PropertyFact]) -> sp.csr_matrix:
    """One L2-normalised TF-IDF row per fact (hashed tokens, `CONTENT_DIMENSIONS` columns)."""
    rows, cols, values = [], [], []
    for row, fact in enumerate(facts):
        counts: dict[int, int] = {}
        for token in _tokens(fact):
            bucket = _bucket(token)
            counts[bucket] = counts.get(bucket, 0) + 1
        rows.extend([row] * len(counts))
        cols.extend(counts)
        values.extend(counts.values())
    shape = (len(facts), CONTENT_DIMENSIONS)
    matrix = sp.csr_matrix((np.asarray(values, dtype=np.float32), (rows, cols)), shape=shape)
    document_frequency = np.bincount(matrix.indices, minlength=CONTENT_DIMENSIONS)
    idf = np.log((1 + len(facts)) / (1 + document_frequency)).astype(np.float32) + 1
    matrix = matrix.multiply(idf).tocsr()
    matrix.data = np.log1p(matrix.data).astype(np.float32)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1
    return sp.csr_matrix(sp.diags(1 / norms) @ matrix, dtype=np.float32)


@dataclass
class ContentIndex:
    item_ids: list[str]
    vectors: sp.csr_matrix
    row_of: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.row_of = {item: row for row, item in enumerate(self.item_ids)}

    @classmethod
    def of(cls, facts: list[PropertyFact]) -> ContentIndex:
        return cls([f.property_id.hex for f in facts], content_vectors(facts))

    def similar(self, item: str, limit: int) -> list[tuple[str, float]]:
        row = self.row_of.get(item)
        if row is None:
            return []
        scores = (self.vectors @ self.vectors[row].T).toarray().ravel()
        scores[row] = -1
        top = np.argsort(-scores)[:limit]
        return [(self.item_ids[i], float(scores[i])) for i in top if scores[i] > 0]

    def affinity(self, items: list[tuple[str, float]], candidates: list[str]) -> np.ndarray:
        """How close each candidate is to a weighted set of items (a profile's properties)."""
        rows = [(self.row_of[i], w) for i, w in items if i in self.row_of]
        if not rows or not candidates:
            return np.zeros(len(candidates), dtype=np.float32)
        taste = (
            sp.csr_matrix(
                (np.asarray([w for _, w in rows], dtype=np.float32), ([0] * len(rows), [r for r, _ in rows])),
                shape=(1, len(self.item_ids)),
            )
            @ self.vectors
        )
        candidate_rows = [self.row_of.get(c, -1) for c in candidates]
        present = np.asarray([r >= 0 for r in candidate_rows])
        scores = np.zeros(len(candidates), dtype=np.float32)
        if present.any():
            matrix = self.vectors[[r for r in candidate_rows if r >= 0]]
            scores[present] = (matrix @ taste.T).toarray().ravel()
        return scores


# ---------------------------------------------------------------------------- collaborative model


@dataclass
class Interactions:
    users: list[str]
    items: list[str]
    matrix: sp.csr_matrix  # users x items, confidence
    signals: int


def interactions(
    subjects: np.ndarray, items: np.ndarray, kinds: np.ndarray, at_ms: np.ndarray, ms: np.ndarray, now_ms: int
) -> Interactions:
    """The users x items confidence matrix of archived signals (columns as numpy arrays of str/int)."""
    keep = np.asarray([kind in KIND_WEIGHTS and KIND_WEIGHTS[kind] > 0 for kind in kinds], dtype=bool)
    keep &= np.asarray([s is not None for s in subjects]) & np.asarray([i is not None for i in items])
    subjects, items, kinds, at_ms, ms = subjects[keep], items[keep], kinds[keep], at_ms[keep], ms[keep]
    weights = np.asarray([KIND_WEIGHTS[k] for k in kinds], dtype=np.float32)
    dwell = kinds == "dwell"
    if dwell.any():
        weights[dwell] *= np.minimum(np.nan_to_num(ms[dwell].astype(np.float64)) / 30_000, 4.0).astype(np.float32)
    age_days = (now_ms - at_ms.astype(np.int64)) / 86_400_000
    weights *= np.power(0.5, np.maximum(age_days, 0) / MODEL_HALF_LIFE_DAYS).astype(np.float32)
    user_ids, user_index = np.unique(subjects.astype(str), return_inverse=True)
    item_ids, item_index = np.unique(items.astype(str), return_inverse=True)
    matrix = sp.csr_matrix((weights, (user_index, item_index)), shape=(len(user_ids), len(item_ids)), dtype=np.float32)
    matrix.sum_duplicates()
    return Interactions(list(user_ids), list(item_ids), matrix, int(keep.sum()))


def fit_als(data: Interactions, *, factors: int = 32, iterations: int = 15, regularization: float = 0.05,
            alpha: float = 20.0, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(user factors, item factors) of implicit ALS, on one thread (the machine serves requests too)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=factors,
            iterations=iterations,
            regularization=regularization,
            alpha=alpha,
            random_state=seed,
            num_threads=1,
        )
        model.fit(data.matrix, show_progress=False)
    return np.asarray(model.user_factors, dtype=np.float32), np.asarray(model.item_factors, dtype=np.float32)


@dataclass
class TrainedModel:
    version: str
    user_ids: list[str]
    user_factors: np.ndarray
    item_ids: list[str]
    item_factors: np.ndarray
    content: ContentIndex | None
    manifest: dict
    user_row: dict[str, int] = field(default_factory=dict)
    item_row: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user_row = {u: i for i, u in enumerate(self.user_ids)}
        self.item_row = {p: i for i, p in enumerate(self.item_ids)}

    def knows(self, subject: str) -> bool:
        return subject in self.user_row

    def scores(self, subject: str, candidates: list[str]) -> np.ndarray:
        """The model's preference of `subject` for each candidate (0 for unknown users or items)."""
        out = np.zeros(len(candidates), dtype=np.float32)
        row = self.user_row.get(subject)
        if row is None:
            return out
        vector = self.user_factors[row]
        rows = np.asarray([self.item_row.get(c, -1) for c in candidates], dtype=np.int64)
        present = rows >= 0
        if present.any():
            out[present] = self.item_factors[rows[present]] @ vector
        return out

    def top(self, subject: str, limit: int) -> list[tuple[str, float]]:
        row = self.user_row.get(subject)
        if row is None:
            return []
        scores = self.item_factors @ self.user_factors[row]
        top = np.argsort(-scores)[:limit]
        return [(self.item_ids[i], float(scores[i])) for i in top]


def new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]


def save(model_dir: Path, model: TrainedModel) -> Path:
    """Writes the version directory, then points CURRENT at it (atomically); keeps the last few."""
    model_dir.mkdir(parents=True, exist_ok=True)
    directory = model_dir / model.version
    directory.mkdir()
    _write_factors(directory, model)
    if model.content is not None:
        sp.save_npz(directory / "content.npz", model.content.vectors)
        (directory / "content-items.json").write_text(json.dumps(model.content.item_ids))
    (directory / "manifest.json").write_text(json.dumps(model.manifest, indent=2))
    pointer = model_dir / f".CURRENT-{uuid.uuid4().hex}"
    pointer.write_text(model.version)
    os.replace(pointer, model_dir / "CURRENT")
    for old in versions(model_dir)[:-VERSIONS_KEPT]:
        shutil.rmtree(model_dir / old, ignore_errors=True)
    return directory


def _write_factors(directory: Path, model: TrainedModel) -> None:
    temporary = directory / f".model-{uuid.uuid4().hex}.npz"
    with temporary.open("wb") as out:
        np.savez(
            out,
            user_ids=np.asarray(model.user_ids, dtype=str),
            user_factors=model.user_factors,
            item_ids=np.asarray(model.item_ids, dtype=str),
            item_factors=model.item_factors,
        )
    os.replace(temporary, directory / "model.npz")


def versions(model_dir: Path) -> list[str]:
    if not model_dir.exists():
        return []
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir() and (p / "manifest.json").exists())


def current_version(model_dir: Path) -> str | None:
    try:
        return (model_dir / "CURRENT").read_text().strip() or None
    except FileNotFoundError:
        return None


def load(model_dir: Path, version: str) -> TrainedModel:
    directory = model_dir / version
    with np.load(directory / "model.npz") as data:
        user_ids, user_factors = data["user_ids"].tolist(), data["user_factors"]
        item_ids, item_factors = data["item_ids"].tolist(), data["item_factors"]
    content = None
    if (directory / "content.npz").exists():
        items = json.loads((directory / "content-items.json").read_text())
        content = ContentIndex(items, sp.load_npz(directory / "content.npz").tocsr())
    manifest = json.loads((directory / "manifest.json").read_text())
    return TrainedModel(version, user_ids, user_factors, item_ids, item_factors, content, manifest)


def erase_subject(model_dir: Path, subject: str) -> int:
    """Removes the subject's row from every kept version; returns how many versions held one."""
    erased = 0
    for version in versions(model_dir):
        model = load(model_dir, version)
        row = model.user_row.get(subject)
        if row is None:
            continue
        keep = np.ones(len(model.user_ids), dtype=bool)
        keep[row] = False
        model.user_ids = [u for u, k in zip(model.user_ids, keep, strict=True) if k]
        model.user_factors = model.user_factors[keep]
        _write_factors(model_dir / version, model)
        erased += 1
    return erased


def train(archive_table, facts: list[PropertyFact], *, now_ms: int | None = None, factors: int = 32,
          iterations: int = 15) -> TrainedModel:  # fmt: skip
    """Fits the collaborative model on an archive table (see `archive.SCHEMA`) and the content vectors."""
    started = time.perf_counter()
    now_ms = now_ms or int(time.time() * 1000)
    users = archive_table["user_id"].to_numpy(zero_copy_only=False)
    sessions = archive_table["session_id"].to_numpy(zero_copy_only=False)
    subjects = np.asarray(
        [
            f"u:{u}" if u is not None else (f"s:{s}" if s is not None else None)
            for u, s in zip(users, sessions, strict=True)
        ],
        dtype=object,
    )
    data = interactions(
        subjects,
        archive_table["property_id"].to_numpy(zero_copy_only=False),
        archive_table["kind"].to_numpy(zero_copy_only=False),
        archive_table["at_ms"].to_numpy(zero_copy_only=False),
        archive_table["ms"].to_numpy(zero_copy_only=False),
        now_ms,
    )
    if data.matrix.nnz:
        user_factors, item_factors = fit_als(data, factors=factors, iterations=iterations)
    else:
        user_factors = np.zeros((0, factors), dtype=np.float32)
        item_factors = np.zeros((0, factors), dtype=np.float32)
    content = ContentIndex.of(facts) if facts else None
    manifest = {
        "trained_at": datetime.now(UTC).isoformat(),
        "algorithm": "implicit ALS",
        "factors": factors,
        "iterations": iterations,
        "signals": data.signals,
        "users": len(data.users),
        "items": len(data.items),
        "properties_with_content": len(facts),
        "seconds": round(time.perf_counter() - started, 3),
    }
    version = new_version()
    manifest["version"] = version
    return TrainedModel(version, data.users, user_factors, data.items, item_factors, content, manifest)
