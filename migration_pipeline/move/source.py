"""The SQLite source: a consistent snapshot of the app's live file, then streamed table by table.

In:  the app's SQLite file, possibly open by the app in rollback-journal or WAL mode.
Out: :func:`take_snapshot` copies it in one consistent state (source_copy.py: its bytes when no one writes
     it, else through SQLite's online backup API from a read-only connection), so every table is read
     from one point in time and the app is blocked for the copy only, not for the migration.
     :class:`Snapshot` then streams rows with their ``rowid`` in bounded batches, or their columns
     (:meth:`Snapshot.stream_columns`, read by csrc/read.c where it built), with undecodable TEXT kept as
     :class:`~migration_pipeline.move.convert.InvalidText`, never dropped.
Fails: :class:`SourceError` for a source that cannot be snapshotted (missing, a directory, unreadable, not
     a SQLite database, damaged: the snapshot passes SQLite's ``quick_check``), one line naming the file,
     what is wrong and what to do, chained to SQLite's error; sqlite3 errors otherwise. The source file
     is never written: it is only ever opened with ``mode=ro``.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import orjson

from ..connect.local_postgres import state_dir
from ..connect.settings import Settings, fan_out_setting
from . import native
from .convert import decode_text
from .source_check import SourceError, check_path, quote, unreadable, verify
from .source_copy import copy_consistent, file_sha256, read_consistently, sha256_on_a_thread

BATCH_ROWS = 5_000


@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    source_path: Path
    source_size: int
    snapshot_sha256: str
    tables: dict[str, int]  # row count per table in the snapshot


def take_snapshot(
    source_path: Path,
    snapshot_path: Path,
    vet: Callable[[Snapshot], None] | None = None,
    amend: Callable[[Path], None] | None = None,
) -> SnapshotInfo:
    """Copy the live source into ``snapshot_path`` (replaced atomically) in one read transaction,
    never writing the source or creating files beside it (see :func:`read_consistently`). ``amend``
    changes the copy first (the operator's corrections of quarantined rows, corrections.py); ``vet`` then
    sees it before it replaces the previous snapshot and may refuse it by raising."""
    snapshot_path.parent.mkdir(parents=True, exist_ok=True)
    partial = snapshot_path.with_name(snapshot_path.name + f".{os.getpid()}.partial")
    partial.unlink(missing_ok=True)
    source_path = Path(source_path)
    check_path(source_path)
    try:
        try:
            read_consistently(source_path, lambda uri: copy_consistent(source_path, uri, partial))
            # the copy's digest is read on a thread of its own while SQLite checks it (1M tweets: 0.25 s)
            digest = sha256_on_a_thread(partial) if amend is None else None
            counts = verify(partial)
        except sqlite3.DatabaseError as err:
            raise SourceError(unreadable(source_path, err)) from err
        if amend is not None:
            amend(partial)
            digest = sha256_on_a_thread(partial)
        if vet is not None:
            with Snapshot(partial, locked=False) as snap:
                vet(snap)
        sha256 = digest.result()
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    taken_at = datetime.now(UTC)
    with snapshot_lock(snapshot_path, exclusive=True):
        os.replace(partial, snapshot_path)
    info = SnapshotInfo(snapshot_path, source_path, source_path.stat().st_size, sha256, counts)
    record_origin(snapshot_path, source_path, info.snapshot_sha256, taken_at)
    return info


@contextmanager
def snapshot_lock(snapshot_path: Path, *, exclusive: bool) -> Iterator[None]:
    """A lock beside a snapshot: readers (every :class:`Snapshot`) share it; whoever changes the file in
    place or replaces it (a delta sync advancing its baseline, a new snapshot) takes it exclusively, so
    no load or check ever reads a snapshot half changed."""
    path = snapshot_path.with_name(snapshot_path.name + ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _origin_path(snapshot_path: Path) -> Path:
    return snapshot_path.with_name(snapshot_path.name + ".origin.json")


def record_origin(snapshot_path: Path, source_path: Path, identity: str, taken_at: datetime) -> None:
    """Record beside ``snapshot_path`` where its content came from (see :meth:`Snapshot.origin`):
    ``identity`` is the sha256 of the snapshot as taken, or of the change set a delta sync applied to it."""
    stat = snapshot_path.stat()
    origin = {
        "source_path": str(Path(source_path).resolve()),
        "snapshot_sha256": identity,
        "taken_at": taken_at.isoformat(),
        "snapshot_state": [stat.st_size, stat.st_mtime_ns],
    }
    sidecar = _origin_path(snapshot_path)
    partial = sidecar.with_name(f"{sidecar.name}.{os.getpid()}.partial")
    partial.write_bytes(orjson.dumps(origin))
    os.replace(partial, sidecar)


def default_snapshot_path(settings: Settings) -> Path:
    """Where a source/target pair keeps the snapshot its tables are loaded (and checked) from."""
    ident = f"{settings.sqlite_path.resolve()}|{settings.describe()}"
    where = fan_out_setting().snapshot_dir or state_dir() / "snapshots"
    return where / f"{hashlib.sha256(ident.encode()).hexdigest()[:16]}.db"


class Snapshot:
    """A read-only view of a snapshot file (immutable: nothing else writes it)."""

    def __init__(self, path: Path, *, locked: bool = True):
        if not Path(path).is_file():
            raise SourceError(f"no source snapshot at {path}: materialize the snapshot asset first")
        self.path = Path(path)
        # held until close(): a delta sync waits for readers. ``locked=False`` is for the holder of the
        # exclusive lock itself.
        self._lock = snapshot_lock(self.path, exclusive=False) if locked else None
        if self._lock is not None:
            self._lock.__enter__()
        self._uri = f"{self.path.resolve().as_uri()}?mode=ro&immutable=1"
        self._conn = sqlite3.connect(self._uri, uri=True)
        self._conn.text_factory = decode_text

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._conn.close()
        if self._lock is not None:
            self._lock.__exit__(None, None, None)
            self._lock = None

    def origin(self) -> dict:
        """Where this snapshot came from: ``source_path``, ``snapshot_sha256``, ``taken_at`` (ISO 8601),
        as :func:`take_snapshot` recorded them beside it; for a file it did not record (or one replaced
        since), the file's own sha256 and no source or time."""
        stat = self.path.stat()
        sidecar = _origin_path(self.path)
        if sidecar.is_file():
            origin = orjson.loads(sidecar.read_bytes())
            if origin.pop("snapshot_state") == [stat.st_size, stat.st_mtime_ns]:
                return origin
        return {"source_path": None, "snapshot_sha256": file_sha256(self.path), "taken_at": None}

    def table_names(self) -> list[str]:
        rows = self._conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        )
        return [r[0] for r in rows]

    def has_table(self, table: str) -> bool:
        return table in self.table_names()

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self._conn.execute(f"PRAGMA table_info({quote(table)})")]

    def count(self, table: str) -> int:
        return self._conn.execute(f"SELECT count(*) FROM {quote(table)}").fetchone()[0]

    def stream(
        self, table: str, columns: Sequence[str], first: int | None = None, last: int | None = None
    ) -> Iterator[list[tuple]]:
        """Batches of ``(rowid, *values)`` in rowid order (only rowids from ``first`` to ``last``, both
        included, when given); memory is bounded by the batch size.

        TEXT is decoded by SQLite's fast built-in path; when a batch holds bytes that are not UTF-8
        (which would abort that path), the batch is read again from the last good rowid with
        :func:`decode_text`, which keeps such values as ``InvalidText`` instead of failing."""
        after: int | None = None if first is None else first - 1
        careful = False
        while True:
            self._conn.text_factory = decode_text if careful else str
            select, params = _in_rowid_order(table, columns, after, last)
            cursor = self._conn.execute(select, params)
            try:
                while batch := cursor.fetchmany(BATCH_ROWS):
                    after = batch[-1][0]
                    yield batch
                    if careful:
                        break  # past the undecodable batch: back to the fast path
                else:
                    return
            except sqlite3.OperationalError as err:
                if careful or "decode" not in str(err):
                    raise
                careful = True
                continue
            careful = False

    def stream_columns(
        self, table: str, columns: Sequence[str], first: int | None = None, last: int | None = None
    ) -> Iterator[Columns]:
        """:meth:`stream`'s batches as their columns, the same values read by the compiled reader
        (csrc/read.c) where it built (native.py): no tuple a row, nor a transposing after (1M tweets read
        in 1.1 s, not 2.0-2.2 s)."""
        compiled = native.compiled
        if compiled is None:
            for batch in self.stream(table, columns, first, last):
                yield Columns(map(list, zip(*batch, strict=True)))
            return
        select, params = _in_rowid_order(table, columns, None if first is None else first - 1, last)
        reader = compiled.select_open(self._uri, select, tuple(params), decode_text)
        while (batch := compiled.select_columns(reader, BATCH_ROWS))[0]:
            yield Columns(batch)

    def ranges(self, table: str, rows_per_range: int) -> list[tuple[int, int]]:
        """(first, last) rowid of each run of ``rows_per_range`` rows in rowid order (none for an empty table)."""
        return self._conn.execute(
            f"SELECT min(rowid), max(rowid) FROM (SELECT rowid, (row_number() OVER (ORDER BY rowid) - 1) / ?"
            f" AS r FROM {quote(table)}) GROUP BY r ORDER BY r",
            (rows_per_range,),
        ).fetchall()

    def query(self, select: str, params: Sequence = ()) -> list[tuple]:
        """Rows of a read-only query on the snapshot (TEXT that is not UTF-8 kept as InvalidText, read
        again through the careful decoder when the fast one meets it)."""
        try:
            self._conn.text_factory = str
            return self._conn.execute(select, params).fetchall()
        except sqlite3.OperationalError as err:
            if "decode" not in str(err):
                raise
            self._conn.text_factory = decode_text
            return self._conn.execute(select, params).fetchall()

    def rows_by_rowid(self, table: str, columns: Sequence[str], rowids: Sequence[int]) -> list[tuple]:
        """The ``(rowid, *values)`` rows with the given rowids (for quarantining them with their values)."""
        self._conn.text_factory = decode_text
        found = []
        for start in range(0, len(rowids), 500):
            chunk = rowids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found.extend(self._conn.execute(_select(table, columns) + f" WHERE rowid IN ({marks})", chunk))
        return found


class Columns(list):
    """A batch of :meth:`Snapshot.stream_columns`: the values of each column in a list, the rowids first."""

    def row(self, i: int) -> tuple:
        """Row ``i`` as :meth:`Snapshot.stream` gives it: ``(rowid, *values)``."""
        return tuple(column[i] for column in self)


def _in_rowid_order(
    table: str, columns: Sequence[str], after: int | None, last: int | None
) -> tuple[str, list]:
    """The SELECT of ``(rowid, *columns)`` past rowid ``after`` up to ``last`` (either may be None) in
    rowid order, and its parameters."""
    bounds = [
        (cond, value) for cond, value in ((" rowid > ?", after), (" rowid <= ?", last)) if value is not None
    ]
    where = (" WHERE" + " AND".join(cond for cond, _ in bounds)) if bounds else ""
    return _select(table, columns) + where + " ORDER BY rowid", [value for _, value in bounds]


def _select(table: str, columns: Sequence[str]) -> str:
    cols = ", ".join(["rowid", *(quote(c) for c in columns)])
    return f"SELECT {cols} FROM {quote(table)}"
