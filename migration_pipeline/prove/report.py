"""A verification report an operator can attach to a change ticket (Markdown).

In:  a connection to the target, the catalog and the snapshot the tables were loaded from.
Out: :func:`build` runs every check of every table (proof.run, from the registry of checks.py) and
     :func:`render` writes them, with each check's description and blocking from that registry, as
     Markdown: a summary table, then each table's checks with the numbers they compared.
     :func:`keep` stores a report's Markdown under ``.local/reports/``.
     ``python -m migration_pipeline.prove.report [--out FILE]`` does it with the configured settings.
Fails: psycopg errors propagate; nothing here writes to the database.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from ..catalog import Catalog, load_catalog
from ..connect.local_postgres import state_dir
from ..move import audit
from ..move.phase import current as phase_of
from . import checks, proof
from .outcome import Outcome


@dataclass(frozen=True)
class TableReport:
    table: str
    load: dict | None
    outcomes: tuple[Outcome, ...]

    @property
    def blocking_failures(self) -> list[str]:
        return [o.name for o in self.outcomes if checks.BY_NAME[o.name].blocking and not o.passed]

    @property
    def warnings(self) -> list[str]:
        return [o.name for o in self.outcomes if not checks.BY_NAME[o.name].blocking and not o.passed]


def build(conn: psycopg.Connection, catalog: Catalog, snapshot_path: Path | None) -> list[TableReport]:
    return [
        TableReport(
            name,
            audit.latest_load(conn, name),
            tuple(proof.run(conn, catalog, name, snapshot_path, with_app_checks=True)),
        )
        for name in catalog.names
    ]


def _numbers(metadata: dict) -> str:
    text = json.dumps(metadata, default=str, ensure_ascii=False)
    return text if len(text) <= 600 else text[:597] + "..."


def render(reports: list[TableReport], *, target: str, snapshot: str | None, phase: str | None = None) -> str:
    failed = [r.table for r in reports if r.blocking_failures]
    warned = sum(len(r.warnings) for r in reports)
    verdict = "FAILED: " + ", ".join(failed) if failed else "all blocking checks passed"
    lines = [
        "# Migration verification report",
        "",
        f"- generated: {datetime.now(UTC).isoformat(timespec='seconds')}",
        f"- target: {target}",
        f"- source snapshot: {snapshot or 'none'}",
        f"- phase: {phase or 'unknown'}",
        f"- verdict: **{verdict}**"
        + (f" ({warned} warning{'s' * (warned != 1)}, see below)" if warned else ""),
        "",
        "| table | run | source rows | loaded | quarantined | passed | warnings | blocking failures |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        load = r.load or {}
        passed = sum(o.passed for o in r.outcomes)
        lines.append(
            f"| {r.table} | {load.get('run_id', '-')} | {load.get('source_rows', '-')} | {load.get('loaded_rows', '-')}"
            f" | {load.get('rejected_rows', '-')} | {passed}/{len(r.outcomes)} | {', '.join(r.warnings) or '-'}"
            f" | {', '.join(r.blocking_failures) or '-'} |"
        )
    for r in reports:
        lines += ["", f"## {r.table}", ""]
        for o in r.outcomes:
            check = checks.BY_NAME[o.name]
            mark = "PASS" if o.passed else ("FAIL" if check.blocking else "WARN")
            lines.append(f"- **{mark}** `{o.name}`: {check.description}")
            for problem in o.problems:
                lines.append(f"  - {problem}")
            lines.append(f"  - numbers: `{_numbers(o.metadata)}`")
    return "\n".join(lines) + "\n"


def keep(kind: str, run_id: str, text: str) -> Path:
    """Keep a report's Markdown (``kind``: verification, provenance) under .local/reports/<kind>-<run id>.md;
    returns its path."""
    path = state_dir() / "reports" / f"{kind}-{run_id}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def main(argv: list[str] | None = None) -> int:
    from ..connect.settings import load_settings
    from ..connect.target import connect
    from ..move.source import default_snapshot_path

    parser = argparse.ArgumentParser(description="Write the verification report of the configured target.")
    parser.add_argument("--out", type=Path, default=Path("verification-report.md"))
    args = parser.parse_args(argv)
    settings = load_settings()
    snapshot = default_snapshot_path(settings)
    with connect(settings) as conn:
        reports = build(conn, load_catalog(), snapshot if snapshot.is_file() else None)
        now = phase_of(conn).describe()
    args.out.write_text(render(reports, target=settings.describe(), snapshot=str(snapshot), phase=now))
    failed = [r.table for r in reports if r.blocking_failures]
    print(
        f"wrote {args.out}: " + (f"FAILED ({', '.join(failed)})" if failed else "all blocking checks passed")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
