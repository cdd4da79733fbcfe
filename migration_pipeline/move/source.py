"""The SQLite source: a consistent snapshot of the app's live file, then streamed table by table.

In:  the app's SQLite file, possibly open by the app in rollback-journal or WAL mode.
Out: :func:`take_snapshot` copies it through SQLite's online backup API from a read-only connection, so
     every table is read from one consistent point in time and the app is blocked for the copy only, not
     for the migration. :class:`Snapshot` then streams rows with their ``rowid`` in bounded batches,
     with undecodable TEXT kept as :class:`~migration_pipeline.move.convert.InvalidText`, never dropped.
Fails: :class:`SourceError` for a source that cannot be snapshotted (missing, a directory, unreadable, not
     a SQLite database, damaged: the snapshot passes SQLite's ``quick_check``), one line naming the file,
     what is wrong and what to do, chained to SQLite's error; sqlite3 errors otherwise. The source file
     is never written: it is only ever opened with ``mode=ro``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson

from ..connect.local_postgres import state_dir
from ..connect.settings import Settings, fan_out_setting
from .convert import decode_text
from .source_check import SourceError, check_path, quote, unreadable, verify

BATCH_ROWS = 5_000
T = TypeVar("T")


@dataclass(frozen=True)
class SnapshotInfo:
    path: Path
    source_path: Path
    source_size: int
    snapshot_sha256: str
    tables: dict[str, int]  # row count per table in the snapshot


_SIDE_FILES = ("-wal", "-shm", "-journal")


def file_state(path: Path) -> tuple:
    """What changes when anyone writes the database: the main file's size and mtime, and which of
    its side files exist (a WAL-mode writer creates -wal, a rollback-mode writer -journal)."""
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns, tuple(Path(f"{path}{s}").exists() for s in _SIDE_FILES)


def _copy(source_path: Path, uri: str, partial: Path) -> None:
    """A consistent copy of the source at ``uri`` in ``partial``. Read with ``immutable=1``, no one has the
    file open for writing (read_consistently then checks it did not change meanwhile), so its bytes are
    that copy, taken at the speed of the disk (1M tweets: 0.3 s, against 1.4 s page by page through the
    backup API); otherwise SQLite's backup API copies it in one read transaction."""
    if uri.endswith("immutable=1"):
        shutil.copyfile(source_path, partial)
        with contextlib.closing(sqlite3.connect(partial)) as target:
            target.execute("PRAGMA journal_mode = DELETE")
    else:
        _backup(uri, partial)


def _backup(uri: str, partial: Path) -> None:
    source = sqlite3.connect(uri, uri=True)
    try:
        source.execute("PRAGMA busy_timeout = 30000")
        target = sqlite3.connect(partial)
        try:
            source.backup(target)  # one step: a single read transaction, a consistent copy
            target.execute("PRAGMA journal_mode = DELETE")
        finally:
            target.close()
    finally:
        source.close()


def read_consistently(path: Path, read: Callable[[str], T]) -> T:
    """``read(uri)`` of the live source in one consistent state, without ever writing beside it.

    While the app has the file open in WAL mode (its -wal/-shm exist), read through SQLite's locking
    (``mode=ro``), as any reader must. Otherwise SQLite would create -wal/-shm files for a read-only
    WAL connection, so read with ``immutable=1`` (no locks, no side files) and accept the result only
    if nothing changed meanwhile: any writer in either journal mode changes the file or creates a side
    file. A source that keeps changing is then read through ``mode=ro`` after all. ``read`` must do
    all its reading in one SQLite read transaction."""
    base = path.resolve().as_uri()
    for _attempt in range(3):
        before = file_state(path)
        if any(before[2]):
            break
        try:
            result = read(f"{base}?mode=ro&immutable=1")
        except sqlite3.DatabaseError:
            if file_state(path) == before:
                raise  # a real error, not a torn read of a file being written
            continue
        if file_state(path) == before:
            return result
    return read(f"{base}?mode=ro")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _digest(path: Path) -> Future[str]:
    """:func:`file_sha256` of ``path``, computed on a thread (hashing and reading release the GIL)."""
    thread = ThreadPoolExecutor(1, thread_name_prefix="snapshot-sha256")
    try:
        return thread.submit(file_sha256, path)
    finally:
        thread.shutdown(wait=False)  # the thread ends with the digest; result() waits for it


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
            read_consistently(source_path, lambda uri: _copy(source_path, uri, partial))
            # the copy's digest is read on a thread of its own while SQLite checks it (1M tweets: 0.25 s)
            digest = _digest(partial) if amend is None else None
            counts = verify(partial)
        except sqlite3.DatabaseError as err:
            raise SourceError(unreadable(source_path, err)) from err
        if amend is not None:
            amend(partial)
            digest = _digest(partial)
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
        self._conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
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
            bounds = [(" rowid > ?", after), (" rowid <= ?", last)]
            bounds = [(cond, value) for cond, value in bounds if value is not None]
            where = (" WHERE" + " AND".join(cond for cond, _ in bounds)) if bounds else ""
            cursor = self._conn.execute(
                _select(table, columns) + where + " ORDER BY rowid", [value for _, value in bounds]
            )
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


def _select(table: str, columns: Sequence[str]) -> str:
    cols = ", ".join(["rowid", *(quote(c) for c in columns)])
    return f"SELECT {cols} FROM {quote(table)}"
