"""pgloader for ``migrate_bench.py``: the app's SQLite file into bare tables, and what it made of the rows.

Its best configuration for this comparison: ``data only`` into the bench's bare tables (``create no
tables``: pgloader issues nothing but COPY, its 4 default workers reading and writing concurrently), the
keys, indexes and foreign keys added afterwards by the same psql scripts as the floor, and
``--dynamic-space-size 4096`` (its default heap dies at 1M tweets). ``on error resume next`` (keep the
rows PostgreSQL accepts, reject the others to ``<root>/<table>/<table>.dat``) is what its documentation
gives as the SQLite default; 3.6.7 behaves as ``on error stop`` without it (the whole ``tweets`` table
is skipped at the first bad value). Its own SQLite rule for DATETIME reads an integer as a year, which
rejects every epoch timestamp of the app, so ``cast="app"`` adds ``pgloader_app.lisp``'s transform;
``cast="stock"`` runs pgloader's rules as shipped.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import _floor  # bench/, the script's directory, is on sys.path
import psycopg
from psycopg import sql

from migration_pipeline.catalog import Catalog

BINARY = shutil.which("pgloader")
LISP = Path(__file__).with_name("pgloader_app.lisp")


def version() -> str:
    if BINARY is None:
        return ""
    return _floor.run([BINARY, "--version"]).out.splitlines()[0]


def load(
    server: dict, database: str, source: Path, root: Path, work_mem: str, cast: str
) -> tuple[_floor.Run, dict]:
    """Run pgloader; returns its run and per table (errors, rows) from its summary."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    target = (
        f"postgresql://{server['user']}:{server['password']}@{server['host']}:{server['port']}/{database}"
    )
    command = "\n".join([
        f"LOAD DATABASE FROM sqlite://{source} INTO {target}",
        "  WITH data only, create no tables, include no drop, no truncate, reset no sequences,",
        "       on error resume next",
        *(["  CAST type datetime to timestamptz using app-timestamp"] if cast == "app" else []),
        f"  SET maintenance_work_mem TO '{work_mem}';",
    ])  # fmt: skip
    (root / "bench.load").write_text(command + "\n")
    argv = [BINARY, "--root-dir", str(root), "--dynamic-space-size", "4096",
            "--summary", str(root / "summary.txt"), str(root / "bench.load")]  # fmt: skip
    if cast == "app":  # a copy: pgloader compiles it to a .fasl beside it
        argv[1:1] = ["--load-lisp-file", shutil.copy(LISP, root)]
    result = _floor.run(argv)
    (root / "pgloader.out").write_text(result.out + result.err)
    if result.code != 0:
        raise SystemExit(
            f"pgloader failed ({result.code}), see {root / 'pgloader.out'}:\n{result.err[-2000:]}"
        )
    summary = (root / "summary.txt").read_text() if (root / "summary.txt").exists() else result.out
    counts = {}
    for line in summary.splitlines():
        found = re.match(r"\s*([a-z_]+)\s+(\d+)\s+(\d+)\s+\S+\s*[kMG]?B\s", line)
        if found:
            counts[found.group(1)] = (int(found.group(2)), int(found.group(3)))
    return result, counts


def rejects(root: Path, log: str) -> tuple[int, list[str]]:
    """Rows in pgloader's reject files, and its distinct error messages (values elided) with counts."""
    rows = sum(len(f.read_bytes().splitlines()) for f in root.glob("*/*.dat"))
    reasons = Counter()
    for message in re.findall(r"^\S+ ERROR (.*)$", log, re.M):
        table, _, text = re.sub(r'^PostgreSQL \["(\w+)"\] Database error \S+ ', r"\1\0", message).rpartition(
            "\0"
        )
        reasons[(f"{table}: " if table else "") + re.sub(r'"[^"]*"', '"…"', text)[:100]] += 1
    return rows, [f"{n:,} × {reason}" for reason, n in reasons.most_common(8)]


def compare(server: dict, database: str, catalog: Catalog, csv_dir: Path) -> list[str]:
    """Compare pgloader's tables with the rows the project landed (its CSV export, loaded into schema
    ``expected`` here): rows missing, rows extra (exact whole-row comparison), and per column the rows
    whose value differs under the same key. One line per table that differs."""
    lines, same = [], 0
    with psycopg.connect(**{**server, "dbname": database}, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA expected")
        for spec in catalog.tables:
            t, e = sql.Identifier(spec.name), sql.Identifier("expected", spec.name)
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE {})").format(e, t))
            copy = sql.SQL("COPY {} FROM STDIN (FORMAT csv)").format(e)
            with open(csv_dir / f"{spec.name}.csv", "rb") as f, conn.cursor() as cur, cur.copy(copy) as cp:
                while chunk := f.read(1 << 20):
                    cp.write(chunk)
            got, want, missing, extra = conn.execute(
                sql.SQL(
                    "SELECT (SELECT count(*) FROM {t}), (SELECT count(*) FROM {e}),"
                    " (SELECT count(*) FROM (SELECT * FROM {e} EXCEPT ALL SELECT * FROM {t}) m),"
                    " (SELECT count(*) FROM (SELECT * FROM {t} EXCEPT ALL SELECT * FROM {e}) x)"
                ).format(t=t, e=e)
            ).fetchone()
            if not (missing or extra or got != want):
                same += 1
                continue
            columns = [c for c in spec.column_names if c not in spec.primary_key]
            diffs = conn.execute(
                sql.SQL("SELECT {} FROM {} e JOIN {} p USING ({})").format(
                    sql.SQL(", ").join(
                        sql.SQL("count(*) FILTER (WHERE e.{c} IS DISTINCT FROM p.{c})").format(c=sql.Identifier(c))
                        for c in columns
                    ),
                    e, t, sql.SQL(", ").join(map(sql.Identifier, spec.primary_key)),
                )
            ).fetchone()  # fmt: skip
            changed = ", ".join(f"{c} {n:,}" for c, n in zip(columns, diffs, strict=True) if n)
            lines.append(f"{spec.name}: pgloader {got:,} rows, the project {want:,}; {missing:,} of the project's "
                         f"rows absent or different, {extra:,} of pgloader's"
                         + (f"; same key, other value: {changed}" if changed else ""))  # fmt: skip
    return [f"{same} of {len(catalog.tables)} tables hold exactly the project's rows"] + lines
