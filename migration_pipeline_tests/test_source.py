"""The SQLite side: snapshots and streaming, on real SQLite files."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from migration_pipeline.move import native, source
from migration_pipeline.move.convert import InvalidText
from migration_pipeline.move.source import Snapshot, SourceError, take_snapshot


def test_stream_survives_invalid_utf8_anywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(source, "BATCH_ROWS", 7)
    path = tmp_path / "bad.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO t VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 51)])
    for bad in (3, 20, 21, 50):
        db.execute("UPDATE t SET v = CAST(? AS TEXT) WHERE id = ?", (b"\xff\xfe" + bytes([bad]), bad))
    db.commit()
    db.close()
    with Snapshot(path) as snap:
        rows = [row for batch in snap.stream("t", ["v"]) for row in batch]
    assert [r[0] for r in rows] == list(range(1, 51))
    for rowid, value in rows:
        if rowid in (3, 20, 21, 50):
            assert isinstance(value, InvalidText) and bytes(value) == b"\xff\xfe" + bytes([rowid])
        else:
            assert value == f"v{rowid}" and type(value) is str


# every storage class, and the TEXT the sqlite3 module cannot decode: what a column of any declared type holds
_VALUES = [None, 0, 1, -1, 2**63 - 1, -(2**63), 0.0, -0.0, 1.5, -2.5e-300, float("inf"), float("-inf"),
           "", "a", "é", "naïve 東京 😀", "a\x00b", "\t\\\n", "x" * 5000, b"", b"\x00\xff", bytes(range(256))]  # fmt: skip
_NOT_UTF8 = [
    b"\xff\xfe",
    b"\xed\xa0\x80",
    b"a\xc3",
    b"\xc0\x80",
    b"\xf4\x90\x80\x80",
]  # bad, surrogate, cut, overlong, > U+10FFFF


def _every_storage_class(path: Path, rows: int) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (a TEXT, b INTEGER, c JSON, d DATETIME, e BLOB)")
    for i in range(rows):
        values = [_VALUES[(i * 7 + k * 3) % len(_VALUES)] for k in range(5)]
        db.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", values)
        if i % 97 == 5:
            db.execute("UPDATE t SET c = CAST(? AS TEXT) WHERE rowid = last_insert_rowid()",
                       (_NOT_UTF8[i % len(_NOT_UTF8)],))  # fmt: skip
    db.execute("DELETE FROM t WHERE rowid % 11 = 3")  # rowids with gaps
    db.commit()
    db.close()


@pytest.mark.parametrize(
    "bounds", [(None, None), (100, None), (None, 9_000), (4_999, 5_001), (12_000, 11_000)]
)
def test_stream_columns_reads_what_stream_reads(tmp_path, bounds):
    """The compiled reader (csrc/read.c) gives the sqlite3 module's values, types and all (an undecodable
    TEXT as InvalidText), in the same batches, rowid bounds included."""
    assert native.compiled is not None, "the compiled fast paths did not build (setup.py, move/csrc/)"
    path = tmp_path / "every.db"
    _every_storage_class(path, 12_000)
    columns = ["a", "b", "c", "d", "e"]
    with Snapshot(path) as snap:
        rows = [row for batch in snap.stream("t", columns, *bounds) for row in batch]
        batches = list(snap.stream_columns("t", columns, *bounds))
    assert all(isinstance(batch, source.Columns) and len(batch) == 6 for batch in batches)
    assert [len(b[0]) for b in batches] == [len(b) for b in _batches(rows)]
    read = [batch.row(i) for batch in batches for i in range(len(batch[0]))]
    assert read == rows and [tuple(map(type, r)) for r in read] == [tuple(map(type, r)) for r in rows]
    if bounds == (None, None):  # the test holds every kind of value
        assert {type(v) for r in read for v in r} == {type(None), int, float, str, bytes, InvalidText}


def _batches(rows: list) -> list[list]:
    return [rows[i : i + source.BATCH_ROWS] for i in range(0, len(rows), source.BATCH_ROWS)]


def test_stream_columns_fails_as_sqlite_does(tmp_path):
    assert native.compiled is not None
    path = tmp_path / "t.db"
    sqlite3.connect(path).execute("CREATE TABLE t (a)").connection.close()
    with Snapshot(path) as snap, pytest.raises(sqlite3.DatabaseError, match="no such table: nope"):
        next(snap.stream_columns("nope", ["a"]))
    with pytest.raises(sqlite3.DatabaseError, match="unable to open"):
        native.compiled.select_open(f"file:{tmp_path}/missing.db?mode=ro", "SELECT 1", (), bytes)


def test_snapshot_is_consistent_and_counts_tables(tmp_path):
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode = wal")
    db.execute("CREATE TABLE users (id TEXT PRIMARY KEY)")
    db.executemany("INSERT INTO users VALUES (?)", [(f"u{i}",) for i in range(10)])
    db.commit()
    info = take_snapshot(path, tmp_path / "snap" / "s.db")
    db.execute("INSERT INTO users VALUES ('late')")  # after the snapshot: not in it
    db.commit()
    assert info.tables == {"users": 10}
    with Snapshot(info.path) as snap:
        assert snap.count("users") == 10 and snap.columns("users") == ["id"]
    db.close()


def test_missing_source_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        take_snapshot(tmp_path / "nope.db", tmp_path / "s.db")
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(SourceError, match="cannot read"):
        take_snapshot(tmp_path / "garbage.db", tmp_path / "s.db")
    with pytest.raises(SourceError, match="snapshot"):
        Snapshot(tmp_path / "never-taken.db")


def _app_db(path, journal_mode):
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(f"PRAGMA journal_mode = {journal_mode}")
    db.execute("CREATE TABLE log (id INTEGER PRIMARY KEY AUTOINCREMENT, batch INTEGER, payload TEXT)")
    db.close()


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_snapshot_writes_nothing_beside_an_idle_source(tmp_path, journal_mode):
    path = tmp_path / "idle.db"
    _app_db(path, journal_mode)
    before = path.read_bytes()
    take_snapshot(path, tmp_path / "snap" / "s.db")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idle.db", "snap"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_snapshots_taken_while_the_app_commits_are_consistent(tmp_path, journal_mode):
    import threading

    path = tmp_path / "busy.db"
    _app_db(path, journal_mode)
    stop = threading.Event()

    def app():
        db = sqlite3.connect(path, isolation_level=None, timeout=30)
        batch = 0
        while not stop.is_set():
            db.execute("BEGIN IMMEDIATE")
            db.executemany(
                "INSERT INTO log (batch, payload) VALUES (?, ?)", [(batch, "x" * 200) for _ in range(100)]
            )
            db.execute("COMMIT")
            batch += 1
        db.close()

    writer = threading.Thread(target=app)
    writer.start()
    try:
        for i in range(8):
            info = take_snapshot(path, tmp_path / "snap" / f"{i}.db")
            with sqlite3.connect(info.path) as snap:
                assert snap.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
                count, batches = snap.execute("SELECT count(*), count(DISTINCT batch) FROM log").fetchone()
            assert count == 100 * batches  # whole transactions only
    finally:
        stop.set()
        writer.join()


def damage(path: Path, table: str) -> None:
    """Overwrite part of a page of ``table``'s b-tree, as a bad disk or a torn copy would."""
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    [page] = db.execute("SELECT max(pageno) FROM dbstat WHERE name = ?", (table,)).fetchone()
    db.close()
    with open(path, "r+b") as handle:
        handle.seek((page - 1) * page_size + 8)
        handle.write(b"\xff" * 64)


def test_bad_sources_say_what_is_wrong_and_what_to_do(sample_db, tmp_path):
    damaged = shutil.copyfile(sample_db, tmp_path / "damaged.db")
    damage(damaged, "tweets")
    cases = {
        damaged: ("the file is damaged", "restore the app's database from a good backup"),
        tmp_path: ("is a directory, not a database file", "set SQLITE_PATH to the app's database file"),
        tmp_path / "notes.db": ("is not a SQLite database", "set SQLITE_PATH to the app's database file"),
    }
    (tmp_path / "notes.db").write_text("not a database\n" * 500)
    for path, (what, todo) in cases.items():
        with pytest.raises(SourceError) as err:
            take_snapshot(path, tmp_path / "snap" / "s.db")
        message = str(err.value)
        assert str(path) in message and what in message and todo in message and "\n" not in message, message
        assert not list((tmp_path / "snap").glob("*")), "no snapshot or partial copy left behind"
    with pytest.raises(SourceError) as err:
        take_snapshot(damaged, tmp_path / "snap" / "s.db")
    assert isinstance(err.value.__cause__, sqlite3.DatabaseError)  # SQLite's own error follows
