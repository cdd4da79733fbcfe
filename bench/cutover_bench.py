"""Benchmark: the cutover's write freeze against a full migration, in one run.

    python bench/cutover_bench.py [--users 10000] [--tweets 1000000] [--percent 1] [--repeat 3]

1. generates the app's database (WAL mode, as the app keeps it);
2. migrates it in full into a fresh database of the embedded server (snapshot, conversion, quarantine,
   COPY, constraint checks, indexes): the reference time;
3. the cutover as the runbook runs it: the app has changed ``--percent`` % of the tweets and a quarter as
   many rows across all tables since the full migration, and its writer process goes on writing while
   ``cutover.run`` syncs in catch-up rounds; when a round moves at most 1,000 rows the operator stops the
   writer and gives the freeze signal, the final sync takes what it wrote meanwhile, then every check:
   the write freeze is timed from the signal to the final sync's commit;
4. the worst case, ``--repeat`` times: the app's writer changes ``--percent`` % of the tweets (new tweets, tweets
   re-scraped with INSERT OR REPLACE, tweets deleted) and then as many rows again across all tables (its
   whole mix: users replaced, referral uses, funnel updates and deletes...), each change its own
   transaction; then the final sync of the cutover runs as during the freeze
   (``cutover.final_sync``: reading the source, the change set, one PostgreSQL transaction) and is timed
   from its start to its commit; the freeze's baseline bookkeeping after the commit is shown apart;
5. checks that PostgreSQL then holds exactly what a full load would (the delta's carried checksum
   against the table's real checksum) and prints the freeze as a share of the full migration.
Figures go into the README by hand.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from migration_pipeline.catalog import load_catalog
from migration_pipeline.connect import local_postgres
from migration_pipeline.connect.settings import Settings
from migration_pipeline.connect.target import connect
from migration_pipeline.move import audit, checksums
from migration_pipeline.move.load import load_all
from migration_pipeline.move.source import Snapshot, take_snapshot
from migration_pipeline.samples.app_writer import TWEET_KINDS, write
from migration_pipeline.samples.sample_data import generate
from migration_pipeline.switch import cutover

WORK = Path(__file__).resolve().parent / "work"


class _Runbook:
    rounds: list
    rounds_rows: int
    made: int
    final_rows: int
    freeze: float
    verify_s: float


def _runbook(conn, catalog, source: Path, baseline: Path, changes: int) -> _Runbook:
    """The cutover as operators run it: ``changes`` changes of the app (1% of the tweets and a quarter as
    many across all tables) have accumulated since the full migration, and the app goes on writing
    steadily (three quarters of its changes to tweets) while the catch-up rounds sync, until the freeze;
    the final sync takes what it wrote during the last round."""
    write(source, changes=changes, seed=11, kinds=TWEET_KINDS)
    write(source, changes=changes // 4, seed=12)
    writer = subprocess.Popen(
        [sys.executable, "-c", "import sys; from migration_pipeline.samples.app_writer import write, KINDS, TWEET_KINDS; "
         "print(write(sys.argv[1], seconds=600, seed=13, pause=0.002, kinds=TWEET_KINDS * 4 + tuple(KINDS)))",
         str(source)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    freeze_signal = WORK / "cutover-freeze"
    made = []

    def log(message: str) -> None:
        if message.startswith("waiting for"):  # the operator stops the app, then signals
            writer.send_signal(signal.SIGINT)
            made.append(int(writer.communicate()[0].split()[-1]))
            freeze_signal.touch()

    time.sleep(1.0)  # the app is writing when the cutover starts
    start = time.perf_counter()
    result = cutover.run(conn, catalog, source, baseline, "bench-cutover", small_rows=1_000, max_rounds=10,
                         signal=freeze_signal, timeout_s=600, log=log)  # fmt: skip
    run = _Runbook()
    run.rounds, run.made = result.rounds, changes + changes // 4 + made[0]
    run.rounds_rows = sum(r.changed_rows for r in result.rounds)
    run.final_rows, run.freeze = result.final.changed_rows, result.freeze_seconds
    run.verify_s = time.perf_counter() - start - sum(r.seconds for r in result.rounds) - result.final.seconds
    return run


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

            changes = int(args.tweets * args.percent / 100)
            runbook = _runbook(conn, catalog, source, baseline, changes)
            print(
                f"cutover runbook: {runbook.rounds_rows:,} changed source rows synced in {len(runbook.rounds)}"
                f" catch-up round(s) ({runbook.made:,} app changes in all, the app writing throughout); final sync "
                f"{runbook.final_rows:,} rows; write freeze {runbook.freeze:.2f} s = {runbook.freeze / full:.1%}"
                f" of the full migration; then every check passed ({runbook.verify_s:.1f} s with the waits)"
            )

            freezes, after = [], []
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
                carried = audit.latest_load(conn, table)["checksum"]
                real = checksums.table_checksum(
                    conn, catalog.table(table), checksums.Checksum.parse(carried).columns
                )
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
