"""The code version: a digest of the code and DDL that decide what lands in a table.

In:  the package's own files, found on disk (no hand-kept list, so a module created by a split is in it).
Out: :func:`code_version`, recorded with every load and sync in ``migration_audit.table_loads`` and shown
     on the Dagster assets. What decides a table's content is :data:`VERSIONED`: ``catalog.py`` (schema/
     read: columns, kinds, limits, keys), every module of ``move/`` (the snapshot, the value rules,
     staging, quarantine, replacing the content, the checksum, the audit rows, the change log, the phase)
     with the C sources of its compiled fast paths (``move/csrc/``), and the PostgreSQL DDL
     ``schema/*.sql``. Not versioned: ``connect/`` (only reaches the server),
     ``prove/`` (reads what was loaded), ``switch/`` (the delta applies move/'s own staging, quarantine
     and checksum, and must land what a full load would; the rest exports or records), ``watch/``,
     ``samples/``, ``defs/``, and ``schema/sqlite/`` (the app's SQLite DDL, not the target's).
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from ..catalog import SCHEMA_DIR

PACKAGE = Path(__file__).resolve().parents[1]
# Paths under the package: a module, or a stage whose every module (and C source) counts.
VERSIONED = ("catalog.py", "move")
SOURCES = (".py", ".c", ".h")


def versioned_files(package: Path = PACKAGE, schema_dir: Path = SCHEMA_DIR) -> list[Path]:
    """The files the code version covers, in a fixed order: the code of :data:`VERSIONED`, then the DDL."""
    code = []
    for name in VERSIONED:
        path = package / name
        code += sorted(p for p in path.rglob("*") if p.suffix in SOURCES) if path.is_dir() else [path]
    return [*code, *sorted(schema_dir.glob("*.sql"))]


def digest(package: Path = PACKAGE, schema_dir: Path = SCHEMA_DIR) -> str:
    """The first 16 hex digits of the sha256 over each versioned file's name and content."""
    sha = hashlib.sha256()
    for path in versioned_files(package, schema_dir):
        name = path.relative_to(package).as_posix() if path.is_relative_to(package) else f"schema/{path.name}"
        sha.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()[:16]


@cache
def code_version() -> str:
    return digest()
