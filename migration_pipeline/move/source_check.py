"""Why a SQLite source cannot be read, said in one line: which file, what is wrong, what to do.

In:  the source path, before it is opened, and SQLite's errors while it is copied; the fresh copy.
Out: :func:`check_path` refuses a path that cannot be the app's database (missing, a directory, not a
     regular file, unreadable); :func:`unreadable` turns SQLite's error into the message of a
     :class:`SourceError`; :func:`verify` runs SQLite's ``quick_check`` on the copy (so a damaged page is
     refused before any load, not halfway through one) and counts every table's rows.
Fails: :class:`SourceError` (:func:`check_path`), ``sqlite3.DatabaseError`` (:func:`verify`).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


class SourceError(RuntimeError):
    """The source database cannot be read, or is not the app's database."""


def quote(name: str) -> str:
    """A SQLite identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


def check_path(path: Path) -> None:
    """SourceError for a source path that cannot be the app's database file."""
    fix = "set SQLITE_PATH to the app's database file"
    if path.is_dir():
        raise SourceError(f"SQLite source {path} is a directory, not a database file: {fix} (inside it?)")
    if not path.exists():
        raise SourceError(f"SQLite source {path} does not exist: {fix}")
    if not path.is_file():
        raise SourceError(f"SQLite source {path} is not a regular file: {fix}")
    if not os.access(path, os.R_OK):
        raise SourceError(
            f"cannot read SQLite source {path}: permission denied for this user (uid {os.geteuid()}); grant it "
            "read access to the file (and its directory), or run the migration as a user who has it"
        )


def unreadable(path: Path, err: sqlite3.DatabaseError) -> str:
    """What SQLite's ``err`` says about the source ``path``, and what to do, on one line."""
    text = " ".join(str(err).split())  # one line
    if "not a database" in text:
        what = "it is not a SQLite database"
        fix = "set SQLITE_PATH to the app's database file"
    elif "malformed" in text or "corrupt" in text:
        what = "the file is damaged"
        fix = (
            "restore the app's database from a good backup (or salvage a copy with sqlite3's .recover) and set "
            "SQLITE_PATH to it"
        )
    elif "unable to open" in text or "readonly" in text or "permission" in text.lower():
        what = "it cannot be opened"
        fix = "check that this user may read the file and its directory"
    else:
        what, fix = "SQLite failed to read it", "check the file, or restore it from a good backup"
    return f"cannot read SQLite source {path}: {what} ({text}); {fix}. Nothing was written to PostgreSQL."


def verify(partial: Path) -> dict[str, int]:
    """SQLite's structural check of the fresh copy (a damaged page fails here, before any load), then the
    row count of every table."""
    db = sqlite3.connect(f"{partial.resolve().as_uri()}?mode=ro", uri=True)
    try:
        found = [line for (text,) in db.execute("PRAGMA quick_check(10)") for line in text.splitlines()]
        problems = [p for p in found if p != "ok" and not p.startswith("*** in database")]
        if problems:
            more = " (and more)" if len(problems) > 1 else ""
            raise sqlite3.DatabaseError(f"database disk image is malformed: {problems[0]}{more}")
        names = db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
        return {n: db.execute(f"SELECT count(*) FROM {quote(n)}").fetchone()[0] for (n,) in names}
    finally:
        db.close()
