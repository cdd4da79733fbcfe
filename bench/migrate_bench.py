"""Benchmark: the full migration of an app-shaped database against psql's ``\\copy`` floor, in one run.

    python bench/migrate_bench.py [--users 10000] [--tweets 1000000] [--keep]

1. generates the source (timed: the generator must make 1M tweets in under a minute);
2. migrates it into a fresh database of the embedded server, in a child process (snapshot, every value
   converted, quarantine, COPY, constraint checks, indexes maintained, sequences, ANALYZE), timing it
   and reading the child's peak RSS;
3. exports the rows that landed to CSV (not timed), then loads the same rows into a second fresh database
   with the same schema (indexes and foreign keys in place) with ``psql \\copy`` (the physical floor);
4. prints rows/s of both, the ratio migration/floor and the peak RSS. Figures go into the README by hand.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from migration_pipeline.catalog import load_catalog
from migration_pipeline.connect import local_postgres
from migration_pipeline.connect.settings import Settings
from migration_pipeline.connect.target import apply_schema, connect

ROOT = Path(__file__).resolve().parent
PSQL = local_postgres.POSTGRES_BIN_PATH / "psql"


def _child(args: list[str]) -> tuple[float, int, str]:
    """Run this script as a child; returns (seconds, peak RSS in bytes, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"child {args} failed")
    return seconds, usage.ru_maxrss * 1024, out


def _migrate(source: str, database: str, snapshot: str) -> None:
    from migration_pipeline.move.load import load_all
    from migration_pipeline.move.source import Snapshot, take_snapshot

    settings = Settings(Path(source), database)
    with connect(settings) as conn:
        info = take_snapshot(Path(source), Path(snapshot))
        with Snapshot(info.path) as snap:
            results = load_all(conn, snap, load_catalog(), "bench")
    for name, r in results.items():
        print(f"{name}\t{r.source_rows}\t{r.loaded_rows}\t{r.rejected_rows}\t{r.seconds:.2f}")


def _check(database: str, snapshot: str, table: str, group: str) -> None:
    """Time the checks of one step of one table (what one Dagster check step runs)."""
    from migration_pipeline.prove import checks

    catalog = load_catalog()
    with connect(Settings(Path("unused"), database)) as conn:
        by_step = {(t, step): selected for t, step, selected in checks.steps(catalog)}
        for check in by_step.get((table, group), ()):
            start = time.perf_counter()
            (outcome,) = checks.run(conn, catalog, Path(snapshot), [(table, check)])
            print(f"{check.name}\t{time.perf_counter() - start:.2f}\t{outcome.passed}")


def _parallel_checks(database: str, snapshot: Path, table: str) -> tuple[float, str]:
    """Run each check step of ``table`` in its own process, at most one per core at a time, as Dagster's
    multiprocess executor does (longest step, the JSON comparison, first)."""
    from concurrent.futures import ThreadPoolExecutor

    from migration_pipeline.prove import checks

    def step(group: str) -> str:
        args = ["--phase", "check", "--database", database, "--snapshot", str(snapshot), "--group", group]
        return subprocess.run(
            [sys.executable, __file__, *args], capture_output=True, text=True, check=True
        ).stdout

    here = [name for t, name, _ in checks.steps(load_catalog()) if t == table]
    groups = sorted(here, key=lambda g: g != "json")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        outputs = list(pool.map(step, groups))
    return time.perf_counter() - start, "".join(outputs)


def _fresh_database(server: dict, name: str) -> None:
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop(server: dict, name: str) -> None:
    with psycopg.connect(**server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tweets", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the databases and files afterwards")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "migrate":
        _migrate(args.source, args.database, args.snapshot)
        return 0
    if args.phase == "check":
        _check(args.database, args.snapshot, "tweets", args.group)
        return 0

    work = ROOT / "work"
    work.mkdir(exist_ok=True)
    source = work / f"bench-{args.users}-{args.tweets}.db"
    source.unlink(missing_ok=True)
    for suffix in ("-wal", "-shm"):
        Path(str(source) + suffix).unlink(missing_ok=True)
    gen_s, _, _ = _child_module(
        ["--out", str(source), "--users", str(args.users), "--tweets", str(args.tweets)]
    )
    print(f"generate: {args.users:,} users + {args.tweets:,} tweets in {gen_s:.1f} s")

    server = local_postgres.ensure_running()
    tag = uuid.uuid4().hex[:6]
    migrated_db, floor_db = f"bench_migrate_{tag}", f"bench_floor_{tag}"
    _fresh_database(server, migrated_db)
    _fresh_database(server, floor_db)
    try:
        snapshot = work / f"{migrated_db}.snapshot.db"
        mig_s, rss, out = _child(
            [
                "--phase",
                "migrate",
                "--source",
                str(source),
                "--database",
                migrated_db,
                "--snapshot",
                str(snapshot),
            ]
        )
        per_table = [line.split("\t") for line in out.strip().splitlines()]
        source_rows = sum(int(r[1]) for r in per_table)
        loaded_rows = sum(int(r[2]) for r in per_table)
        print("table\tsource\tloaded\trejected\tseconds")
        print(out.strip())
        tweets_load_s = float(next(r[4] for r in per_table if r[0] == "tweets"))
        checks_total, check_out = _parallel_checks(migrated_db, snapshot, "tweets")
        print(f"\ncheck (tweets, steps {os.cpu_count()} at a time)\tseconds\tpassed")
        print(check_out.strip())

        catalog = load_catalog()
        csv_dir = Path(tempfile.mkdtemp(dir=work))
        with connect(Settings(source, migrated_db)) as conn:
            for spec in catalog.tables:
                export = sql.SQL("COPY {} TO STDOUT (FORMAT csv)").format(sql.Identifier(spec.name))
                with (
                    open(csv_dir / f"{spec.name}.csv", "wb") as f,
                    conn.cursor() as cur,
                    cur.copy(export) as cp,
                ):
                    for chunk in cp:
                        f.write(chunk)
        with connect(Settings(source, floor_db)) as conn:
            apply_schema(conn, catalog)
        script = "\n".join(
            f"\\copy {spec.name} FROM '{csv_dir / (spec.name + '.csv')}' WITH (FORMAT csv)"
            for spec in catalog.tables
        )
        env = {**os.environ, "PGPASSWORD": server["password"]}
        start = time.perf_counter()
        subprocess.run(
            [str(PSQL), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", server["host"], "-p", server["port"],
             "-U", server["user"], "-d", floor_db],
            input=script + "\n", text=True, check=True, env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        floor_s = time.perf_counter() - start
        for f in csv_dir.iterdir():
            f.unlink()
        csv_dir.rmdir()

        print()
        print(f"migration: {source_rows:,} source rows ({loaded_rows:,} loaded) in {mig_s:.1f} s "
              f"= {source_rows / mig_s:,.0f} rows/s, peak RSS {rss / 2**20:.0f} MB")  # fmt: skip
        print(f"\\copy floor: {loaded_rows:,} rows in {floor_s:.1f} s = {loaded_rows / floor_s:,.0f} rows/s")
        print(f"ratio migration / floor: {mig_s / floor_s:.2f}x")
        print(f"checks of tweets (wall, processes included): {checks_total:.1f} s = "
              f"{100 * checks_total / tweets_load_s:.0f}% of its {tweets_load_s:.1f} s load")  # fmt: skip
    finally:
        if not args.keep:
            _drop(server, migrated_db)
            _drop(server, floor_db)
            for leftover in (source, Path(f"{source}-wal"), Path(f"{source}-shm")):
                leftover.unlink(missing_ok=True)
            (work / f"{migrated_db}.snapshot.db").unlink(missing_ok=True)
    return 0


def _child_module(args: list[str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "migration_pipeline.samples.sample_data", *args],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start, 0, ""


if __name__ == "__main__":
    raise SystemExit(main())
