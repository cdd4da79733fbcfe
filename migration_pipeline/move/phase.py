"""The phase of the migrated database: who writes to it, and so which changes the checks may accept.

In:  a connection to the target; declarations by an operator or a job (``declare_switch``,
     ``withdraw_switch``, the ``cutover`` job, ``finalize``, ``resume_change_log``).
Out: :func:`current` -> the :class:`Phase` in force (``migrated`` until something else is declared);
     :func:`declare` records a transition in ``migration_audit.phases``; :func:`explained` is the SQL
     condition under which a change-log entry is the app's own write: only after the switch was declared,
     and, when ``APP_PG_ROLES`` is set, only by one of those roles.

     - ``migrated``: the app writes to SQLite. Every row change in PostgreSQL is unexplained and fails
       the checks it affects; a re-load (or a sync, once the log is empty) is the way forward.
     - ``switched``: the app writes to PostgreSQL since ``since``; the change log explains its writes.
     - ``finalized``: the soak period ended; the change log is gone and the content belongs to the app.
Fails: :class:`PhaseError` for a transition that makes no sense (say, finalizing before the switch).
"""

from __future__ import annotations

import getpass
import socket
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..connect.settings import read_environment

MIGRATED, SWITCHED, FINALIZED = "migrated", "switched", "finalized"
# the phases each one may be declared from (declare_switch and cutover; withdraw_switch; finalize);
# resume_change_log goes from finalized back to switched through its own step
_ALLOWED = {
    SWITCHED: frozenset({MIGRATED, SWITCHED}),
    MIGRATED: frozenset({SWITCHED}),
    FINALIZED: frozenset({SWITCHED}),
}
_MEANING = {
    MIGRATED: "the app writes to SQLite: any change in PostgreSQL is unexplained and fails the checks",
    SWITCHED: "the app writes to PostgreSQL: the change log explains its writes",
    FINALIZED: "the soak period ended: no change log; checks prove structure, integrity and the app's queries",
}


class PhaseError(RuntimeError):
    """A phase transition that cannot be made from the current phase."""


@dataclass(frozen=True)
class Phase:
    name: str = MIGRATED
    since: datetime | None = None  # None: never declared (migrated by default)
    declared_by: str | None = None
    pg_role: str | None = None
    run_id: str | None = None
    note: str | None = None

    @property
    def meaning(self) -> str:
        return _MEANING[self.name]

    def describe(self) -> str:
        if self.since is None:
            return f"{self.name} ({self.meaning})"
        who = f" by {self.declared_by}" + (f" (run {self.run_id})" if self.run_id else "")
        note = f": {self.note}" if self.note else ""
        return f"{self.name} since {self.since.isoformat(timespec='seconds')}{who}{note} ({self.meaning})"

    def as_metadata(self) -> dict:
        return {
            "phase": self.name,
            "since": self.since.isoformat() if self.since else None,
            "declared_by": self.declared_by,
            "run_id": self.run_id,
            "note": self.note,
        }


def operator() -> str:
    """Who is declaring, when no name is given: the OS user at this host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def current(conn: psycopg.Connection) -> Phase:
    if conn.execute("SELECT to_regclass('migration_audit.phases')").fetchone()[0] is None:
        return Phase()
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            "SELECT phase, declared_at, declared_by, pg_role, run_id, note FROM migration_audit.phases"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return Phase()
    return Phase(
        row["phase"], row["declared_at"], row["declared_by"], row["pg_role"], row["run_id"], row["note"]
    )


def declare(
    conn: psycopg.Connection,
    phase: str,
    *,
    by: str | None = None,
    run_id: str | None = None,
    note: str = "",
    from_phases: frozenset[str] | None = None,
) -> Phase:
    """Record ``phase`` as in force from now (inside the caller's transaction, if any), if the phase in
    force is one it may follow (``from_phases``, default the usual transitions)."""
    if phase not in _ALLOWED:
        raise PhaseError(f"unknown phase {phase!r}")
    with conn.transaction():
        conn.execute("LOCK TABLE migration_audit.phases IN EXCLUSIVE MODE")
        now = current(conn)
        if now.name not in (from_phases or _ALLOWED[phase]):
            raise PhaseError(f"cannot go from {now.name} to {phase}: the database is {now.describe()}")
        conn.execute(
            "INSERT INTO migration_audit.phases (phase, declared_by, run_id, note) VALUES (%s, %s, %s, %s)",
            (phase, by or operator(), run_id, note or None),
        )
        return current(conn)


def require_migrated(conn: psycopg.Connection, action: str) -> None:
    """Refuse ``action`` (a load or sync from SQLite) once the app writes to PostgreSQL: it would
    overwrite the app's writes. Withdrawing the switch (after falling back to SQLite) allows it again."""
    now = current(conn)
    if now.name != MIGRATED:
        raise PhaseError(
            f"refusing to {action}: the database is {now.describe()}; loading from SQLite now would overwrite "
            "the app's writes. If the app is back on SQLite, withdraw the switch first (job withdraw_switch)"
        )


def history(conn: psycopg.Connection, limit: int = 20) -> list[dict]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(
            "SELECT * FROM migration_audit.phases ORDER BY id DESC LIMIT %s", (limit,)
        ).fetchall()


def app_roles(environ=None) -> tuple[str, ...]:
    """``APP_PG_ROLES``: the roles the app writes as (comma list); empty means any role."""
    raw = read_environment(environ).get("APP_PG_ROLES", "")
    return tuple(r.strip() for r in raw.split(",") if r.strip())


def explained(alias: str = "c", roles: tuple[str, ...] | None = None) -> sql.Composable:
    """The condition (on ``migration_audit.row_changes`` as ``alias``) under which an entry is the app's
    own write: made after the switch in force was declared, by one of ``roles`` (default APP_PG_ROLES)
    when any are set. Before the switch, and after a withdrawal, nothing is explained."""
    roles = app_roles() if roles is None else roles
    condition = sql.SQL(
        "EXISTS (SELECT 1 FROM (SELECT phase, declared_at FROM migration_audit.phases ORDER BY id DESC LIMIT 1) p"
        " WHERE p.phase = 'switched' AND {a}.changed_at >= p.declared_at)"
    ).format(a=sql.Identifier(alias))
    if roles:
        condition = sql.SQL("({} AND coalesce({}.changed_by = ANY({}), false))").format(
            condition, sql.Identifier(alias), sql.Literal(list(roles))
        )
    return condition
