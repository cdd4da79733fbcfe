"""The shadow of a table: a full load writes each row once, into a bare copy of the table, then swaps it in.

In:  a table nothing references (no foreign key points at it), inside its load's transaction.
Out: :meth:`Shadow.create` makes ``migration_stage.<table>``, shaped like the live table (columns, types,
     defaults, NOT NULL) but bare (no keys, CHECKs, indexes or foreign keys: a COPY into it maintains
     nothing), plus the source ``_rowid`` that quarantine works with. The load COPYs the converted rows
     into it and quarantine moves the rows that break a constraint out of it, adding the live table's
     CHECKs, foreign keys and keys to it as it goes (:meth:`Shadow.add`: PostgreSQL validates each with
     the scan or join a quarantine query would make, so quarantine only queries when one fails).
     :meth:`Shadow.swap_in` then builds the live table's indexes from their catalog definitions (what
     ``schema/`` created; those a fanned-out load built beforehand, :func:`build_indexes`, are kept),
     refreshes its statistics, and in one short step under an ACCESS
     EXCLUSIVE lock gives it the live table's owner, grants, comment and SERIAL sequences, drops the live
     table and moves the shadow into its place. Readers keep the old content until that step; a
     failure anywhere rolls the whole transaction back: the old table, and no shadow.
     :func:`obstacle` says why a table cannot be swapped (something hangs on the live table that a swap
     would lose: a view, a policy, a trigger of someone else's, a publication, column grants); its load
     then replaces the content in place.
Fails: psycopg errors propagate; :class:`LockTimeout` when the live table stays locked by others.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
from psycopg import sql

from ..catalog import TableSpec

SCHEMA = "migration_stage"
ROWID = "_rowid"
# the swap waits this long at a time for the readers and writers of the live table (queued readers wait
# behind the lock request meanwhile), and tries this many times before giving up
LOCK_WAIT, LOCK_TRIES = "2s", 30


class LockTimeout(RuntimeError):
    """The live table stayed in use; the load rolled back and the table keeps its content."""


def shadow_of(table: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, table)


# which load a shadow that outlives its transactions belongs to (a fanned-out load, ranges.py), and the
# tables beside it: the rows its ranges rejected and the ranges that landed
CLAIMS = sql.Identifier(SCHEMA, "loads")


MAINTENANCE_WORK_MEM_MB = 256


def enough_memory(conn: psycopg.Connection) -> None:
    """At least :data:`MAINTENANCE_WORK_MEM_MB` of ``maintenance_work_mem`` for this transaction's index
    builds and validations, or the server's own setting where it is larger (a server sized for big loads)."""
    conn.execute(
        "SELECT set_config('maintenance_work_mem', %(mb)s || 'MB', true) FROM pg_settings"
        " WHERE name = 'maintenance_work_mem' AND setting::bigint < %(mb)s * 1024",
        {"mb": MAINTENANCE_WORK_MEM_MB},
    )


def companions(table: str) -> tuple[sql.Identifier, sql.Identifier]:
    return sql.Identifier(SCHEMA, f"{table}__rejects"), sql.Identifier(SCHEMA, f"{table}__ranges")


def clear(conn: psycopg.Connection, table: str) -> None:
    """Drop ``table``'s shadow and what a fanned-out load left beside it, and forget its claim."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(SCHEMA)))
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}, {}, {}").format(shadow_of(table), *companions(table)))
    if conn.execute("SELECT to_regclass(%s)", (CLAIMS.as_string(conn),)).fetchone()[0] is not None:
        conn.execute(sql.SQL("DELETE FROM {} WHERE table_name = %s").format(CLAIMS), (table,))


def _live(table: str) -> sql.Identifier:
    return sql.Identifier("public", table)


def obstacle(conn: psycopg.Connection, table: str, own_triggers: frozenset[str]) -> str | None:
    """Why ``table`` cannot be swapped (None if it can). ``own_triggers``: the triggers the load itself
    manages (the change log's), which the swap may drop."""
    oid = conn.execute("SELECT %s::regclass::oid", (f"public.{table}",)).fetchone()[0]
    found = conn.execute(
        "SELECT"
        " EXISTS (SELECT FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid"
        "         WHERE d.refobjid = %(t)s AND d.classid = 'pg_rewrite'::regclass AND r.ev_class <> %(t)s),"
        " EXISTS (SELECT FROM pg_constraint WHERE confrelid = %(t)s AND contype = 'f'),"
        " EXISTS (SELECT FROM pg_trigger WHERE tgrelid = %(t)s AND NOT tgisinternal AND tgname <> ALL(%(own)s)),"
        " (SELECT relrowsecurity FROM pg_class WHERE oid = %(t)s) OR EXISTS (SELECT FROM pg_policy WHERE polrelid = %(t)s),"
        " EXISTS (SELECT FROM pg_publication_rel WHERE prrelid = %(t)s),"
        " EXISTS (SELECT FROM pg_attribute WHERE attrelid = %(t)s AND attacl IS NOT NULL),"
        " EXISTS (SELECT FROM pg_inherits WHERE inhrelid = %(t)s OR inhparent = %(t)s)",
        {"t": oid, "own": list(own_triggers)},
    ).fetchone()
    reasons = ("a view or rule depends on it", "a foreign key references it", "it has triggers of its own",
               "it has row-level security", "it is published for logical replication", "it has column grants",
               "it takes part in inheritance")  # fmt: skip
    return next((r for r, hit in zip(reasons, found, strict=True) if hit), None)


class Shadow:
    """One table's shadow, inside its load's transaction: :meth:`create` it, COPY into :attr:`name`,
    let quarantine :meth:`add` its constraints (and :meth:`restage` it), then :meth:`swap_in`."""

    # the constraint kinds quarantine asks for, in its order (CHECKs, foreign keys, then keys)
    KINDS = {"checks": ("c",), "foreign keys": ("f",), "keys": ("p", "u", "x")}

    def __init__(self, conn: psycopg.Connection, spec: TableSpec):
        self.conn, self.spec, self.name = conn, spec, shadow_of(spec.name)
        self.added: set[str] = set()

    @classmethod
    def create(cls, conn: psycopg.Connection, spec: TableSpec) -> Shadow:
        """A bare copy of the live table, plus ``_rowid``, in :data:`SCHEMA` (any leftover, and a fanned-out
        load's claim on it, dropped: the newer load wins)."""
        made = cls(conn, spec)
        clear(conn, spec.name)
        made._like(made.name, _live(spec.name))
        conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint").format(made.name, sql.Identifier(ROWID)))
        return made

    def _like(self, new: sql.Identifier, model: sql.Identifier) -> None:
        self.conn.execute(
            sql.SQL(
                "CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING STORAGE INCLUDING COMPRESSION"
                " INCLUDING GENERATED INCLUDING IDENTITY INCLUDING COMMENTS)"
            ).format(new, model)
        )

    def restage(self) -> sql.Identifier:
        """Copy the rows into a new shadow once quarantine removed rows that no index can hold: an index
        build in this transaction would still read them (PostgreSQL indexes rows its own transaction
        deleted) and fail. Rare (texts over 1 MB of words), so writing twice is fine. Before any
        constraint is added (they would not be copied)."""
        if self.added:
            raise RuntimeError("a shadow is restaged before its constraints are added")
        rewritten = sql.Identifier(SCHEMA, f"{self.spec.name}__rewritten")
        self._like(rewritten, self.name)
        self.conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}").format(rewritten, self.name))
        self.conn.execute(sql.SQL("DROP TABLE {}").format(self.name))
        self.conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(rewritten, sql.Identifier(self.spec.name))
        )
        return self.name

    def add(self, kind: str) -> None:
        """Add the live table's constraints of ``kind`` (a key of :data:`KINDS`); PostgreSQL validates
        them, raising an IntegrityError when a row breaks one."""
        enough_memory(self.conn)
        for statement in _constraints(self.conn, self.spec, self.KINDS[kind]):
            self.conn.execute(statement)
        self.added.add(kind)

    def swap_in(self) -> None:
        """Give the shadow the rest of the live table's structures, statistics, owner, grants and
        sequences, and put it in the live table's place (see module doc)."""
        conn, shadow = self.conn, self.name
        conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(shadow, sql.Identifier(ROWID)))
        for kind in self.KINDS:
            if kind not in self.added:
                self.add(kind)
        for _, statement in _unbuilt(conn, self.spec.name):
            conn.execute(statement)
        conn.execute(sql.SQL("ANALYZE {}").format(shadow))
        _carry_over(conn, self.spec, shadow, _live(self.spec.name))


def _oid(conn: psycopg.Connection, table: str) -> int:
    return conn.execute("SELECT %s::regclass::oid", (f"public.{table}",)).fetchone()[0]


def _constraints(conn: psycopg.Connection, spec: TableSpec, kinds: tuple[str, ...]) -> list[sql.Composable]:
    """The live table's constraints of ``kinds`` as statements on its shadow. A CHECK of ``schema/`` is
    written as there (PostgreSQL's deparsed text can parse into another, equivalent expression, which the
    conformance check would rightly call a difference)."""
    written = {c.name: f"CHECK ({c.expression})" for c in spec.checks if c.name}
    return [
        sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
            shadow_of(spec.name),
            sql.Identifier(name),
            sql.SQL(written.get(name, definition) if kind == "c" else definition),
        )
        for name, definition, kind in conn.execute(
            "SELECT conname, pg_get_constraintdef(oid), contype::text FROM pg_constraint"
            " WHERE conrelid = %s AND contype::text = ANY(%s) ORDER BY contype, conname",
            (_oid(conn, spec.name), list(kinds)),
        )
    ]


def build_indexes(
    conn: psycopg.Connection,
    table: str,
    connect: Callable[[], psycopg.Connection] | None = None,
    jobs: int = 1,
) -> list[str]:
    """The live table's indexes that no constraint made, built on ``table``'s committed shadow (a fanned-out
    load's, before its publish: the publish's transaction, which holds the locks other loads wait for, then
    builds only what is missing); the names of those that could not be built (a row an index cannot hold:
    the publish quarantines it and builds them). Call inside a transaction. With ``connect`` (new
    connections to the same database), up to ``jobs`` indexes are built at once, each committed by a
    connection of its own (as pgcopydb's index jobs; ``CREATE INDEX`` takes a SHARE lock, which its
    siblings share); one that fails leaves the others built."""
    enough_memory(conn)
    todo = _unbuilt(conn, table)
    if connect is None or jobs < 2 or len(todo) < 2:
        return [name for name, statement in todo if not _built_one(conn, statement)]

    def alone(name: str, statement: sql.Composable) -> str | None:
        with connect() as other, other.transaction():
            enough_memory(other)
            return None if _built_one(other, statement) else name

    with ThreadPoolExecutor(min(jobs, len(todo)), thread_name_prefix=f"index-{table}") as jobs_at_once:
        found = [jobs_at_once.submit(alone, name, statement) for name, statement in todo]
        return [name for name in (job.result() for job in found) if name is not None]


def _built_one(conn: psycopg.Connection, statement: sql.Composable) -> bool:
    """Whether ``statement`` built its index (False: a row it cannot hold; nothing was built)."""
    try:
        with conn.transaction():
            conn.execute(statement)
    except (psycopg.DataError, psycopg.errors.ProgramLimitExceeded):
        return False
    return True


def _unbuilt(conn: psycopg.Connection, table: str) -> list[tuple[str, sql.Composable]]:
    """:func:`_indexes` that ``table``'s shadow does not have yet."""
    built = conn.execute(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass",
        (shadow_of(table).as_string(conn),),
    ).fetchall()
    return [(name, statement) for name, statement in _indexes(conn, table) if (name,) not in built]


def _indexes(conn: psycopg.Connection, table: str) -> list[tuple[str, sql.Composable]]:
    """The live table's indexes that no constraint made: (name, the statement that builds it on the shadow)."""
    return [
        (name, sql.SQL(definition))
        for name, definition in conn.execute(
            "SELECT x.relname, replace(pg_get_indexdef(i.indexrelid),"
            "  ' ON ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' ',"
            "  ' ON ' || quote_ident(%s) || '.' || quote_ident(c.relname) || ' ')"
            " FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_class x ON x.oid = i.indexrelid"
            " WHERE i.indrelid = %s AND NOT EXISTS (SELECT FROM pg_constraint k WHERE k.conindid = i.indexrelid"
            "                                       AND k.conrelid = i.indrelid)"
            " ORDER BY i.indexrelid",
            (SCHEMA, _oid(conn, table)),
        )
    ]


def _carry_over(
    conn: psycopg.Connection, spec: TableSpec, shadow: sql.Identifier, live: sql.Identifier
) -> None:
    """The live table's owner, grants, comment and SERIAL sequences to the shadow, then the shadow in
    its place, under an ACCESS EXCLUSIVE lock held to the end of the transaction."""
    table = spec.name
    owner, comment, grants = conn.execute(
        "SELECT pg_get_userbyid(relowner), obj_description(oid, 'pg_class'),"
        " (SELECT array_agg(format('GRANT %%s ON %%I.%%I TO %%s%%s', a.privilege_type, %s::text, %s::text,"
        "   CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,"
        "   CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END))"
        "  FROM aclexplode(relacl) a WHERE a.grantee <> relowner)"
        " FROM pg_class WHERE oid = %s::regclass",
        (SCHEMA, table, f"public.{table}"),
    ).fetchone()
    if owner != conn.execute("SELECT current_user").fetchone()[0]:
        conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(shadow, sql.Identifier(owner)))
    for grant in grants or ():
        conn.execute(sql.SQL(grant))
    if comment is not None:
        conn.execute(sql.SQL("COMMENT ON TABLE {} IS {}").format(shadow, sql.Literal(comment)))
    _lock(conn, live)
    sequences = {  # the SERIAL sequences stay, and go on from where they were
        column: conn.execute("SELECT pg_get_serial_sequence(%s, %s)", (f"public.{table}", column)).fetchone()[
            0
        ]
        for column in spec.serial_columns
    }
    sequences = {column: sequence for column, sequence in sequences.items() if sequence is not None}
    for sequence in sequences.values():
        conn.execute(sql.SQL("ALTER SEQUENCE {} OWNED BY NONE").format(sql.SQL(sequence)))
    conn.execute(sql.SQL("DROP TABLE {}").format(live))
    conn.execute(sql.SQL("ALTER TABLE {} SET SCHEMA public").format(shadow))
    for column, sequence in sequences.items():
        conn.execute(
            sql.SQL("ALTER SEQUENCE {} OWNED BY {}.{}").format(
                sql.SQL(sequence), live, sql.Identifier(column)
            )
        )


def _lock(conn: psycopg.Connection, live: sql.Identifier) -> None:
    """ACCESS EXCLUSIVE on the live table, waiting :data:`LOCK_WAIT` at a time (so the readers queued
    behind the request are not held up for long), from a savepoint so a timeout costs only the attempt."""
    before = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
    for attempt in range(LOCK_TRIES):
        try:
            with conn.transaction():
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(LOCK_WAIT)))
                conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(live))
                conn.execute("SELECT set_config('lock_timeout', %s, true)", (before,))
                return
        except psycopg.errors.LockNotAvailable:
            time.sleep(min(0.1 * 2**attempt, 2.0))
    raise LockTimeout(
        f"{live.as_string(conn)} stayed in use by other sessions for {LOCK_TRIES} tries of {LOCK_WAIT}: "
        "the load rolled back and the table keeps its content; run it again when the table is quieter"
    )
