"""Guards against a wrong source: it must be the app's database, and no load may empty the target.

In:  the tables a snapshot holds, the catalog (which tables may be absent: ``optional_in_source`` in
     ``schema/``), the target's row counts, and a :class:`ShrinkPolicy` (``MAX_SHRINK_SHARE`` and
     ``ALLOW_SHRINK`` from the settings, plus the ``allow_shrink`` run config of the ``migration``
     resource).
Out: :func:`require_tables` and :func:`preflight` decide before anything is written: a source lacking a
     table that is not optional is refused, and so is a source with too few rows to keep a table
     (``before - source rows`` is a lower bound of what the load removes). :meth:`ShrinkPolicy.judge`
     decides inside a table's load transaction, before it commits, on the exact numbers: the table's rows
     whose key the load removes and the rows its foreign-key cascades remove from other tables. A shrink
     the operator confirmed is returned as the record ``table_loads.shrink_confirmed`` keeps.
Fails: :class:`~migration_pipeline.move.source.SourceError` for a source missing tables, :class:`ShrinkRefused`
     for a load removing more than the policy allows; both say what to do, and nothing was written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from ..catalog import Catalog, TableSpec, load_catalog
from ..connect.settings import (
    ALL_TABLES,
    DEFAULT_MAX_SHRINK_SHARE,
    ConfigError,
    Settings,
    load_settings,
    parse_table_list,
)
from ..connect.target import privileges
from . import phase
from .source import Snapshot, SourceError


class ShrinkRefused(RuntimeError):
    """A load would remove more of a table than the operator allowed; nothing was changed."""


@dataclass(frozen=True)
class Shrink:
    table: str
    before: int  # rows in the target table before the load
    removed: int  # of those, rows the load removes
    via: str | None = None  # the table whose load removes them through a foreign key (a cascade)


@dataclass(frozen=True)
class ShrinkPolicy:
    max_share: float = DEFAULT_MAX_SHRINK_SHARE
    confirmed: frozenset[str] = frozenset()  # tables the operator allows to shrink, or {"*"}
    confirmed_by: tuple[str, ...] = ()  # where the confirmation came from, for the audit trail

    @classmethod
    def of(cls, settings: Settings | None = None, run_config: str = "") -> ShrinkPolicy:
        """The policy of ``settings`` (default: the environment) widened by the ``allow_shrink`` run config."""
        settings = load_settings() if settings is None else settings
        extra = parse_table_list(run_config)
        by = ("ALLOW_SHRINK",) * bool(settings.allow_shrink) + ("run config allow_shrink",) * bool(extra)
        policy = cls(settings.max_shrink_share, settings.allow_shrink | extra, by)
        unknown = policy.confirmed - {ALL_TABLES, *load_catalog().names}
        if unknown:
            raise ConfigError(
                f"ALLOW_SHRINK / allow_shrink name tables not in schema/: {', '.join(sorted(unknown))}"
            )
        return policy

    def confirms(self, table: str) -> bool:
        return table in self.confirmed or ALL_TABLES in self.confirmed

    def too_much(self, shrink: Shrink) -> bool:
        return shrink.before > 0 and (
            shrink.removed >= shrink.before or shrink.removed > self.max_share * shrink.before
        )

    def judge(
        self, action: str, shrinks: Iterable[Shrink], source: str, *, at_least: bool = False
    ) -> dict | None:
        """None when no table shrinks more than allowed; the audit record when the operator confirmed
        every such shrink; else :class:`ShrinkRefused`. ``at_least``: the numbers are lower bounds."""
        over = [s for s in shrinks if self.too_much(s)]
        if not over:
            return None
        refused = [s for s in over if not self.confirms(s.table)]
        if refused:
            bound = "at least " if at_least else ""
            parts = "; ".join(
                f"{bound}{s.removed:,} of the {s.before:,} rows of {s.table} ({s.removed / s.before:.0%})"
                + (f", through its foreign key to {s.via}" if s.via else "")
                for s in refused
            )
            limit = f"while the limit is MAX_SHRINK_SHARE={self.max_share:g} of a table's rows, never all"
            names = ",".join(dict.fromkeys(s.table for s in refused))
            raise ShrinkRefused(
                f"refusing to {action} from {source}: it would remove {parts}, {limit}; nothing was "
                f"changed. Check SQLITE_PATH: a wrong, empty or half-copied file looks like this. If the "
                f"source is right and the rows are meant to go, confirm with ALLOW_SHRINK={names} (or the run "
                f"config resources.migration.config.allow_shrink: {names}) and run again."
            )
        return {
            "confirmed_by": list(self.confirmed_by) or ["the caller's policy"],
            "max_shrink_share": self.max_share,
            "tables": {s.table: {"before": s.before, "removed": s.removed, "via": s.via} for s in over},
        }


def require_tables(present: Iterable[str], catalog: Catalog, source: str) -> None:
    """SourceError unless the source has every table of ``schema/`` not marked ``optional_in_source``."""
    present = sorted(present)
    missing = [t.name for t in catalog.tables if not t.optional_in_source and t.name not in present]
    if not missing:
        return
    if present:
        has = f"it has only: {', '.join(present)}"
    elif Path(source).is_file() and Path(source).stat().st_size == 0:
        has = "it is an empty file, which SQLite reads as a database without tables"
    else:
        has = "it has no tables at all"
    raise SourceError(
        f"SQLite source {source} lacks the app's table(s) {', '.join(missing)} ({has}): it is not the app's "
        "database, or not all of it. Point SQLITE_PATH at the app's database file; nothing was written to "
        "PostgreSQL."
    )


def target_counts(conn: psycopg.Connection, catalog: Catalog) -> dict[str, int]:
    """Rows per migrated table that exists in the target (read only)."""
    existing = {
        r[0]
        for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname = ANY(%s)",
            (list(catalog.names),),
        )
    }
    return {
        name: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(name))).fetchone()[0]
        for name in catalog.names
        if name in existing
    }


def preflight(
    conn: psycopg.Connection, snapshot: Snapshot, catalog: Catalog, policy: ShrinkPolicy, source: str
) -> None:
    """Refuse a snapshot that is not the app's database or would shrink a table more than ``policy``
    allows, or that would overwrite the app's writes (it writes to PostgreSQL: phase.py), before any table
    is loaded (reads the target, writes nothing)."""
    phase.require_migrated(conn, "migrate")
    present = snapshot.table_names()
    require_tables(present, catalog, source)
    with privileges(conn):
        counts = target_counts(conn, catalog)
    shrinks = [
        Shrink(name, before, max(0, before - (snapshot.count(name) if name in present else 0)))
        for name, before in counts.items()
    ]
    policy.judge("migrate", shrinks, source, at_least=True)


def keys_gone(
    conn: psycopg.Connection, spec: TableSpec, columns: Iterable[str], stage: sql.Identifier
) -> int:
    """Rows of ``spec``'s table whose primary key is not among the staged rows: what replacing the
    table's content with the stage removes (run inside the load, before the replacement)."""
    table = sql.Identifier(spec.name)
    if not set(spec.primary_key) <= set(columns):
        return conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
    same = sql.SQL(" AND ").join(
        sql.SQL("s.{c} = t.{c}").format(c=sql.Identifier(c)) for c in spec.primary_key
    )
    return conn.execute(
        sql.SQL("SELECT count(*) FROM {t} t WHERE NOT EXISTS (SELECT 1 FROM {s} s WHERE {same})").format(
            t=table, s=stage, same=same
        )
    ).fetchone()[0]
