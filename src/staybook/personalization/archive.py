"""The signal archive: Parquet files partitioned by day, the batch layer's input.

`<archive_dir>/day=YYYY-MM-DD/part-<uuid>.parquet`, one file per group of stream
messages the archive consumer handled. `archive_dir` is a local path or any URI
pyarrow's file systems understand (`s3://bucket/prefix` for an S3-compatible
store). Erasure rewrites the files that hold a user's rows without them.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from staybook.personalization.signals import SignalBatch

# Listings a read tries before an erasure's concurrent rewrite is reported (it takes milliseconds).
READ_ATTEMPTS = 5
SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("received_ms", pa.int64()),
        ("origin", pa.string()),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("kind", pa.string()),
        ("at_ms", pa.int64()),
        ("property_id", pa.string()),
        ("city", pa.string()),
        ("country", pa.string()),
        ("lat", pa.float64()),
        ("lon", pa.float64()),
        ("check_in", pa.date32()),
        ("check_out", pa.date32()),
        ("guests", pa.int32()),
        ("amenities", pa.list_(pa.string())),
        ("property_type", pa.string()),
        ("price", pa.int64()),
        ("currency", pa.string()),
        ("position", pa.int32()),
        ("query_id", pa.string()),
        ("ms", pa.int64()),
    ]
)


def _day(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).date().isoformat()


class SignalArchive:
    def __init__(self, location: str) -> None:
        if "://" in location:
            self.fs, self.root = pafs.FileSystem.from_uri(location)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), str(location)
        self.root = self.root.rstrip("/")

    def write(self, batches: Sequence[SignalBatch]) -> int:
        """Appends the batches' signals, one new file per day they fall on; returns the rows written."""
        columns: dict[str, dict[str, list]] = defaultdict(lambda: {name: [] for name in SCHEMA.names})
        for batch in batches:
            user = batch.user_id.hex if batch.user_id else None
            for s in batch.signals:
                rows = columns[_day(s.at_ms)]
                for name, value in (
                    ("batch_id", batch.batch_id.hex),
                    ("received_ms", batch.received_ms),
                    ("origin", batch.origin),
                    ("user_id", user),
                    ("session_id", batch.session_id),
                    ("kind", s.kind),
                    ("at_ms", s.at_ms),
                    ("property_id", s.property_id.hex if s.property_id else None),
                    ("city", s.city),
                    ("country", s.country),
                    ("lat", s.lat),
                    ("lon", s.lon),
                    ("check_in", s.check_in),
                    ("check_out", s.check_out),
                    ("guests", s.guests),
                    ("amenities", list(s.amenities)),
                    ("property_type", s.property_type),
                    ("price", s.price),
                    ("currency", s.currency),
                    ("position", s.position),
                    ("query_id", s.query_id),
                    ("ms", s.ms),
                ):
                    rows[name].append(value)
        written = 0
        for day, rows in columns.items():
            table = pa.table(rows, schema=SCHEMA)
            directory = f"{self.root}/day={day}"
            self.fs.create_dir(directory, recursive=True)
            final = f"{directory}/part-{uuid.uuid4().hex}.parquet"
            # Written under a name readers skip, then moved: a reader never sees half a file.
            temporary = f"{directory}/.tmp-{uuid.uuid4().hex}"
            pq.write_table(table, temporary, filesystem=self.fs, compression="zstd")
            self.fs.move(temporary, final)
            written += table.num_rows
        return written

    def files(self) -> list[str]:
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True))
        except FileNotFoundError:
            return []
        return sorted(
            info.path
            for info in infos
            if info.type == pafs.FileType.File and info.base_name.startswith("part-") and "/day=" in info.path
        )

    def read(self, since_day: str | None = None) -> pa.Table:
        """Every archived signal (from `since_day` on, ISO date), in one table.

        An erasure replaces files while others read: a file gone between the listing and its
        read means the listing is stale, so the read starts over from a new listing.
        """
        for _ in range(READ_ATTEMPTS - 1):
            try:
                return self._read_listed(since_day)
            except FileNotFoundError:
                continue
        return self._read_listed(since_day)

    def _read_listed(self, since_day: str | None) -> pa.Table:
        tables = [
            pq.read_table(path, filesystem=self.fs, schema=SCHEMA)
            for path in self.files()
            if since_day is None or path.split("/day=")[1][:10] >= since_day
        ]
        return pa.concat_tables(tables) if tables else SCHEMA.empty_table()

    def erase_user(self, user_id: uuid.UUID) -> int:
        """Rewrites every file holding the user's rows without them; returns the rows removed."""
        removed = 0
        for path in self.files():
            table = pq.read_table(path, filesystem=self.fs, schema=SCHEMA)
            mine = pc.equal(table["user_id"], user_id.hex)
            count = pc.sum(mine).as_py() or 0
            if not count:
                continue
            kept = table.filter(pc.invert(pc.fill_null(mine, False)))
            removed += count
            if kept.num_rows == 0:
                self.fs.delete_file(path)
                continue
            temporary = path.rsplit("/", 1)[0] + f"/.tmp-{uuid.uuid4().hex}"
            pq.write_table(kept, temporary, filesystem=self.fs, compression="zstd")
            self.fs.move(temporary, path)
        return removed
