"""Benchmark: the cutover's write freeze against a full migration, in one run.

    python bench/cutover_bench.py [--users 10000] [--tweets 1000000] [--percent 1] [--repeat 3]

1. generates the app's database (WAL mode, as the app keeps it);
2. migrates it in full into a fresh database of the embedded server (snapshot, conversion, quarantine,
   COPY, constraint checks, indexes): the reference time;
3. ``--repeat`` times: the app's writer changes ``--percent`` % of the tweets (new tweets, tweets
   re-scraped with INSERT OR REPLACE, tweets deleted) and then as many rows again across all tables (its
   whole mix: users replaced, referral uses, funnel updates and deletes...), each change its own
   transaction; then the final sync of the cutover runs as during the freeze
   (``cutover.final_sync``: reading the source, the change set, one PostgreSQL transaction) and is timed
   from its start to its commit; the freeze's baseline bookkeeping after the commit is shown apart;
4. checks that PostgreSQL then holds exactly what a full load would (the delta's carried checksum
   against the table's real checksum) and prints the freeze as a share of the full migration.
Figures go into the README by hand.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from migration_pipeline import content, cutover, local_postgres
from migration_pipeline.app_writer import TWEET_KINDS, write
from migration_pipeline.catalog import load_catalog
from migration_pipeline.load import load_all
from migration_pipeline.sample_data import generate
from migration_pipeline.settings import Settings
from migration_pipeline.source import Snapshot, take_snapshot
from migration_pipeline.target import connect

WORK = Path(__file__).resolve().parent / "work"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tweets", type=int, default=1_000_000)
    parser.add_argument("--percent", type=float, default=1.0, help="rows changed before each final sync")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    WORK.mkdir(exist_ok=True)
    source, baseline = WORK / "cutover-app.db", WORK / "cutover-baseline.db"
    for path in WORK.glob("cutover-*"):
        path.unlink()
    start = time.perf_counter()
    generate(source, users=args.users, tweets=args.tweets)
    print(f"generate: {args.users:,} users + {args.tweets:,} tweets in {time.perf_counter() - start:.1f} s")

    server = local_postgres.ensure_running()
    database = f"bench_cutover_{uuid.uuid4().hex[:8]}"
    catalog = load_catalog()
    try:
        with connect(Settings(source, database)) as conn:
            start = time.perf_counter()
            take_snapshot(source, baseline)
            with Snapshot(baseline) as snap:
                load_all(conn, snap, catalog, "full")
            full = time.perf_counter() - start
            print(f"full migration: {full:.1f} s")

            freezes, after = [], []
            changes = int(args.tweets * args.percent / 100)
            for number in range(1, args.repeat + 1):
                write(source, changes=changes, seed=100 + number, kinds=TWEET_KINDS)
                write(source, changes=changes // 4, seed=200 + number)
                result, freeze = cutover.final_sync(
                    conn, catalog, source, baseline, f"bench-{number}", time.time(), log=lambda _m: None
                )
                freezes.append(freeze)
                after.append(result.baseline_seconds)
                tweets = result.tables["tweets"]
                print(
                    f"final sync {number}: {changes:,} tweets changed ({args.percent}%) + {changes // 4:,} other"
                    f" changes = {result.changed_rows:,} changed source rows (tweets +{tweets.added:,}"
                    f" -{tweets.removed:,}); freeze {freeze:.2f} s (diff "
                    f"{result.diff_seconds:.2f} s, apply {result.apply_seconds:.2f} s); baseline after: "
                    f"{result.baseline_seconds:.2f} s"
                )
            for table in catalog.names:  # the carried checksum is the table's real one
                carried = conn.execute(
                    "SELECT checksum FROM migration_audit.table_loads WHERE table_name = %s"
                    " ORDER BY finished_at DESC LIMIT 1",
                    (table,),
                ).fetchone()[0]
                real = content.table_checksum(conn, table, content.Checksum.parse(carried).columns)
                assert str(real) == carried, (table, carried, str(real))
        median = statistics.median(freezes)
        print(
            f"write freeze (median of {len(freezes)}): {median:.2f} s = {median / full:.1%} of the full "
            f"migration's {full:.1f} s (max {max(freezes):.2f} s = {max(freezes) / full:.1%}); checksums exact"
        )
    finally:
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
