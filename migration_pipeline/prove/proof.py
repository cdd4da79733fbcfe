"""The proof that a table was migrated correctly: every check, as data, and how to run it.

In:  a connection to the target, the catalog, a table name and (for the checks that compare against
     the source) the snapshot the table was loaded from.
Out: :data:`CHECKS` (name, description, blocking) and :func:`run` -> one :class:`Outcome` per check, each
     carrying the numbers it compared so that a failure explains itself. Knows nothing of Dagster.
Fails: psycopg errors propagate; a check that cannot be evaluated (no load recorded, no snapshot)
     fails with that explanation rather than passing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ..catalog import Catalog
from ..move import audit, changes, checksums, phase
from ..move.source import Snapshot
from . import conformance, content, json_sample, verify


@dataclass(frozen=True)
class Outcome:
    name: str
    passed: bool
    metadata: dict = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def description(self) -> str | None:
        return "; ".join(self.problems) or None


@dataclass(frozen=True)
class CheckDef:
    name: str
    description: str
    blocking: bool
    run: Callable[[psycopg.Connection, Catalog, str, Path | None], Outcome]
    # Checks of one group run together (one Dagster step); groups run in parallel. The JSON comparison
    # streams the whole source table again, so it gets a step of its own.
    group: str = "table"


def _rows_conserved(conn, catalog, table, snapshot_path) -> Outcome:
    found = verify.conservation(conn, table)
    return Outcome("rows_conserved", not found.problems, found.as_metadata(), tuple(found.problems))


def _referential_integrity(conn, catalog, table, snapshot_path) -> Outcome:
    found = verify.orphans(conn, catalog, table)
    problems = tuple(
        f"{fk}: {n['orphans']} orphan rows, e.g. {n['first_keys']}" for fk, n in found.items() if n["orphans"]
    )
    return Outcome("referential_integrity", not problems, {"foreign_keys": found}, problems)


def _finalized(conn, name: str, table: str, *, or_rebased: bool = False) -> Outcome | None:
    """After finalize the content is the app's: a content check says what it last proved, and passes.
    With ``or_rebased``, the same once the table is proven against a baseline recorded from PostgreSQL
    (after resuming the change log), which the source no longer describes."""
    now = phase.current(conn)
    base = audit.proof_baseline(conn, table) or {}
    rebased = or_rebased and base and not base["why"].startswith("load")
    if now.name != phase.FINALIZED and not rebased:
        return None
    return Outcome(
        name,
        True,
        {
            **now.as_metadata(),
            "compared_with_source": False,
            "baseline": {k: str(v) for k, v in base.items()},
        },
        (),
    )


def _content_parity(conn, catalog, table, snapshot_path) -> Outcome:
    if (done := _finalized(conn, "content_parity", table)) is not None:
        return done
    base = audit.proof_baseline(conn, table)
    if not base or not base.get("checksum"):
        return Outcome("content_parity", False, {}, (f"no checksum recorded for a load of {table}",))
    loaded = checksums.Checksum.parse(base["checksum"])
    app = changes.summary(conn, table)  # what the app changed since, from the change log
    now = phase.current(conn)
    unexplained = changes.explain(table, changes.unexplained(conn, table), now)
    expected = checksums.Checksum(
        loaded.rows + app.added - app.removed,
        loaded.total + app.added_hash - app.removed_hash,
        loaded.columns,
    )
    actual = checksums.table_checksum(conn, table, expected.columns)
    metadata = {
        "run_id": base["run_id"],
        "baseline": base["why"],
        "phase": now.name,
        "source_rows_checksum": str(loaded),
        "app_changes": {"added": app.added, "removed": app.removed},
        "expected_checksum": str(expected),
        "target_checksum": str(actual),
        "source_rows": expected.rows,
        "target_rows": actual.rows,
    }
    if (actual.rows, actual.total) == (expected.rows, expected.total) and not unexplained:
        return Outcome("content_parity", True, metadata)
    problems = list(unexplained)
    if (actual.rows, actual.total) != (expected.rows, expected.total):
        problems.append(
            f"target checksum {actual.rows}/{actual.total} != {'loaded source rows' if base['why'].startswith('load') else 'baseline'}"
            f"{' + app changes' if app.added or app.removed else ''} {expected.rows}/{expected.total}"
        )
    if snapshot_path is not None and snapshot_path.is_file() and base["why"].startswith("load"):
        load = audit.latest_load(conn, table)
        with Snapshot(snapshot_path) as snap:
            diff = content.content_diff(conn, snap, catalog, catalog.table(table), load["run_id"])
        metadata["first_differences"] = diff
        problems += [
            f"{d['key']}: {d['difference']} {', '.join(d['columns'] or [])}".strip() for d in diff[:3]
        ]
    return Outcome("content_parity", False, metadata, tuple(problems))


def _jsonb_fidelity(conn, catalog, table, snapshot_path) -> Outcome:
    if (done := _finalized(conn, "jsonb_fidelity", table, or_rebased=True)) is not None:
        return done
    spec = catalog.table(table)
    if snapshot_path is None or not snapshot_path.is_file():
        return Outcome("jsonb_fidelity", False, {}, ("no source snapshot to compare JSON values with",))
    load = audit.latest_load(conn, table) or {}
    with Snapshot(snapshot_path) as snap:
        found = content.json_fidelity(conn, snap, spec, load.get("run_id"))
        if found["columns"] and len(spec.primary_key) == 1:
            found["python_parse_sample"] = json_sample.compare_sample(
                conn, snap, spec, found["columns"], run_id=load.get("run_id")
            )
    problems = [
        f"{m['key']}.{m['column']}: " + ("value differs" if m["value_differs"] else "jsonb_typeof differs")
        for m in found["mismatches"]
    ]
    sample = found.get("python_parse_sample", {})
    problems += [
        f"{d['key']}.{d['column']}: differs from Python's parse of the source"
        for d in sample.get("differing", [])
    ]
    return Outcome("jsonb_fidelity", not problems, found, tuple(problems))


def _schema_conforms(conn, catalog, table, snapshot_path) -> Outcome:
    problems, compared = conformance.schema_problems(conn, catalog, table)
    seq_problems, sequences = conformance.sequence_problems(conn, catalog.table(table))
    metadata = {"compared": compared, "sequences": sequences}
    return Outcome(
        "schema_conforms", not (problems or seq_problems), metadata, tuple(problems + seq_problems)
    )


def _quarantine(conn, catalog, table, snapshot_path) -> Outcome:
    found = verify.quarantined_by_reason(conn, table)
    total, groups, listed = found["total"], found["groups"], len(found["by_reason"])
    return Outcome(
        "quarantine",
        total == 0,
        {
            "quarantined_rows": total,
            "quarantined_rows_listed": sum(found["by_reason"].values()),
            "reason_groups": groups,
            "by_reason": found["by_reason"],
        },
        (f"{total} rows quarantined in {groups} reason groups"
         + (f" (the largest {listed} listed)" if listed < groups else ""),) if total else (),
    )  # fmt: skip


CHECKS: tuple[CheckDef, ...] = (
    CheckDef(
        "rows_conserved",
        "Every source row is accounted for: source rows = loaded + quarantined (as recorded by the last load "
        "and found in migration_audit.rejected_rows), and the table holds exactly the loaded rows, plus and "
        "minus the app's logged writes once it writes to PostgreSQL (phase switched). Any other change in "
        "PostgreSQL fails it, named (statement, rows, keys, when, role, application, client).",
        True,
        _rows_conserved,
    ),
    CheckDef(
        "referential_integrity",
        "No row references a missing parent, counted by query for every foreign key of schema/ (so a dropped "
        "or disabled constraint cannot hide an orphan).",
        True,
        _referential_integrity,
    ),
    CheckDef(
        "content_parity",
        "An order-independent checksum of every loaded row, computed over the converted source rows during "
        "the load, equals the same checksum over the stored rows now (adjusted by the app's logged writes "
        "after the switch; any other change fails it, named); on mismatch the first differing keys and "
        "columns are named (compared against the snapshot). After finalize it reports the final baseline.",
        True,
        _content_parity,
    ),
    CheckDef(
        "jsonb_fidelity",
        "Every jsonb value equals the source JSON text it came from (same structure, numbers, unicode) and has "
        "that text's JSON type; a sample of rows is also parsed on both sides by Python and compared type-strictly.",
        True,
        _jsonb_fidelity,
        group="json",
    ),
    CheckDef(
        "schema_conforms",
        "Columns, types, NOT NULL, defaults, constraints and indexes match what schema/ creates (applied to a "
        "scratch schema and compared through PostgreSQL's catalog), and every SERIAL sequence is past its max.",
        True,
        _schema_conforms,
    ),
    CheckDef(
        "quarantine",
        "Warning, not blocking: the rows the last load quarantined, counted by column and reason.",
        False,
        _quarantine,
    ),
)


def groups(catalog: Catalog, table: str) -> dict[str, tuple[CheckDef, ...]]:
    """The checks that apply to ``table`` by group (no JSON group for a table without jsonb columns)."""
    has_json = any(c.kind == "jsonb" for c in catalog.table(table).columns)
    found: dict[str, tuple[CheckDef, ...]] = {}
    for check in CHECKS:
        if check.group == "json" and not has_json:
            continue
        found[check.group] = (*found.get(check.group, ()), check)
    return found


def run(
    conn: psycopg.Connection,
    catalog: Catalog,
    table: str,
    snapshot_path: Path | None,
    names: set[str] | None = None,
) -> list[Outcome]:
    """Run the checks (all that apply, or those in ``names``) of ``table``."""
    applicable = [c for group in groups(catalog, table).values() for c in group]
    return [
        c.run(conn, catalog, table, snapshot_path) for c in applicable if names is None or c.name in names
    ]
