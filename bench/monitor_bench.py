"""Benchmark: the cost of one postgres_monitor sensor tick against a database under the app's load.

    python bench/monitor_bench.py [--tweets 50000] [--concurrency 8] [--ticks 20]

Migrates a generated sample into a fresh database, starts the load generator (the app's workload at the
given concurrency), and meanwhile evaluates the real sensor (sampling, thresholds, history) ``--ticks``
times, timing each; prints the median, 90th percentile and maximum in milliseconds, and the load's
throughput. Figures go into the README by hand.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
from dagster import DagsterInstance, build_sensor_context
from psycopg import sql

from migration_pipeline.catalog import load_catalog
from migration_pipeline.connect import local_postgres
from migration_pipeline.connect.settings import Settings
from migration_pipeline.connect.target import connect, conninfo
from migration_pipeline.defs.connect import MigrationResource
from migration_pipeline.defs.watch import postgres_monitor
from migration_pipeline.move.load import load_all
from migration_pipeline.move.source import Snapshot, default_snapshot_path, take_snapshot
from migration_pipeline.samples.sample_data import generate
from migration_pipeline.watch import loadgen


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--tweets", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=20)
    args = parser.parse_args()

    server = local_postgres.ensure_running()
    database = f"bench_monitor_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = generate(Path(tmp) / "app.db", users=args.users, tweets=args.tweets)
            settings = Settings(source, database)
            with connect(settings) as conn:
                info = take_snapshot(source, default_snapshot_path(settings))
                with Snapshot(info.path) as snap:
                    load_all(conn, snap, load_catalog(), "bench")
            resources = {"migration": MigrationResource(sqlite_path=str(source), pg_database=database)}
            instance = DagsterInstance.ephemeral()
            load: list = []
            seconds = max(10.0, args.ticks * 1.0)
            loader = threading.Thread(
                target=lambda: load.append(loadgen.run(conninfo(settings), args.concurrency, seconds))
            )
            loader.start()
            time.sleep(1.0)  # let the load ramp up
            timings, cursor = [], None
            for _ in range(args.ticks):
                start = time.perf_counter()
                with build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
                    result = postgres_monitor(context)
                timings.append((time.perf_counter() - start) * 1000)
                cursor = result.cursor
                time.sleep(0.3)
            loader.join()
    finally:
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
    ran = load[0]
    timings.sort()
    print(f"load: {ran.total:,} app operations in {ran.seconds:.1f} s ({ran.total / ran.seconds:,.0f}/s) "
          f"at concurrency {args.concurrency}, errors {dict(ran.errors)}")  # fmt: skip
    print(f"sensor tick under load ({len(timings)} ticks): median {statistics.median(timings):.0f} ms, "
          f"p90 {timings[int(len(timings) * 0.9) - 1]:.0f} ms, max {timings[-1]:.0f} ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
