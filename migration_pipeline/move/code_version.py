"""The code version: a digest of the code and DDL that decide what lands in a table.

Out: :func:`code_version`, recorded with every load and sync in ``migration_audit.table_loads`` and shown
     on the Dagster assets; a change to any of that code or to ``schema/*.sql`` is a new version.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from ..catalog import SCHEMA_DIR

_PACKAGE = Path(__file__).resolve().parents[1]
# The code that decides what lands in a table: a change to any of it, or to the DDL, is a new version.
_VERSIONED = (
    "move/convert.py",
    "move/load.py",
    "move/quarantine.py",
    "move/source.py",
    "catalog.py",
    "move/changes.py",
    "move/checksums.py",
    "move/stage.py",
    "move/phase.py",
    "move/json_rules.py",
    "move/index_limits.py",
)


@cache
def code_version() -> str:
    digest = hashlib.sha256()
    for name in _VERSIONED:
        digest.update((_PACKAGE / name).read_bytes())
    for ddl in sorted(SCHEMA_DIR.glob("*.sql")):
        digest.update(ddl.read_bytes())
    return digest.hexdigest()[:16]
