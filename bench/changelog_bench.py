"""Benchmark: what the change log's triggers cost the app's workload, and how big the log gets.

    python bench/changelog_bench.py [--tweets 50000] [--seconds 15] [--rounds 4] [--concurrency 4,16]

1. generates an app-shaped SQLite database (``--users`` / ``--tweets``) and migrates it into a fresh
   database of the embedded server (each load installs its table's change-log triggers), then declares
   the switch, so the load generator's writes are the app's writes (explained, as in production);
2. for each round and each concurrency, runs the load generator (the app's workload through
   ``psycopg_pool``) with the triggers installed and with them removed (``changes.remove`` on every
   table; reinstalled with ``changes.install`` over the columns of each table's load checksum), each run
   after a ``--warmup`` of its own; the two modes alternate which goes first (round by round and
   concurrency by concurrency), so a drift of the machine's load or of the growing log costs both alike;
3. reports per concurrency the median ops/s and p50/p95 latency with and without the triggers over
   the rounds, their spread (min-max), the cost as the difference of the medians and as the median of
   each round's paired cost; and where it goes: CPU per operation of the server's processes (from
   /proc, less sensitive than ops/s to how busy the shared machine is) and of the load generator, WAL per
   operation, the logging functions' calls and time (``track_functions = 'pl'``);
4. the log's growth over every run with triggers: its entries, the app's row writes they record (one
   row inserted, updated or deleted is one write: an insert or delete is logged as one entry, an update
   as two, the old row and the new; cross-checked with ``pg_stat_user_tables``), its on-disk size
   (``pg_total_relation_size``), then ``changes.compact`` on every table and the same figures again,
   all per million app row writes;
   after each run the load generator's users' tweets and funnel rows are deleted (unlogged, as a load's
   own writes are) so that every run starts from the same tables: its date-range reads would otherwise
   return the tweets of every run before, and the bench would slow down run after run;
5. the machine's load average before, during and after (the machine is shared: read the spread).
``--profile`` adds one run per concurrency with ``pg_stat_statements.track = all``: the statements the
triggers run, by total time. ``--setup-sql`` runs statements after the migration (to try a change of
the log's table, say). Figures go into the README by hand.
"""

from __future__ import annotations

import argparse
import itertools
import os
import resource
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from migration_pipeline.catalog import load_catalog
from migration_pipeline.connect import local_postgres
from migration_pipeline.connect.settings import Settings
from migration_pipeline.connect.target import connect, conninfo
from migration_pipeline.move import audit, changes, checksums, phase
from migration_pipeline.move.load import load_all
from migration_pipeline.move.source import Snapshot, default_snapshot_path, take_snapshot
from migration_pipeline.samples.sample_data import generate
from migration_pipeline.watch import loadgen

MODES = ("on", "off")
APP_WRITES = "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables WHERE schemaname = 'public'"
TRIGGER_TIME = (
    "SELECT coalesce(sum(calls), 0)::bigint, coalesce(sum(total_time), 0)::float8 FROM pg_stat_user_functions"
    " WHERE schemaname = 'migration_audit' AND funcname LIKE 'log\\_changes\\_\\_%'"
)
LOG_SIZE = "SELECT pg_total_relation_size('migration_audit.row_changes')"
TICK = os.sysconf("SC_CLK_TCK")


class ServerCpu:
    """CPU seconds the embedded server used: its processes alive now, plus the backends that exited
    (the postmaster's reaped children), read from /proc (the server runs on this machine)."""

    def __init__(self, conn: psycopg.Connection):
        self.postmaster = int(conn.execute("SELECT pg_read_file('postmaster.pid')").fetchone()[0].split()[0])

    @staticmethod
    def _stat(pid: int) -> list[str]:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()  # fields from 3 (state) on

    def seconds(self) -> float:
        own = self._stat(self.postmaster)
        ticks = sum(int(x) for x in own[11:15])  # utime, stime, cutime, cstime
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                try:
                    fields = self._stat(int(entry.name))
                except OSError:
                    continue
                if int(fields[1]) == self.postmaster:
                    ticks += int(fields[11]) + int(fields[12])
        return ticks / TICK


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Run:
    mode: str
    concurrency: int
    round: int
    ops_per_s: float
    p50_ms: float
    p95_ms: float
    errors: int
    load1: float
    ops: int = 0
    server_ms_per_op: float = 0.0
    client_ms_per_op: float = 0.0
    wal_per_op: float = 0.0
    trigger_calls: int = 0
    trigger_ms: float = 0.0


@dataclass
class Growth:
    writes_by_stats: int = 0  # pg_stat_user_tables over every run with triggers (warm-ups included)


def set_log(conn: psycopg.Connection, catalog, columns: dict[str, tuple[str, ...]], on: bool) -> None:
    """Install (over each table's load checksum columns) or remove the change-log triggers of every table."""
    with conn.transaction():
        for name in catalog.names:
            if on:
                changes.install(conn, catalog.table(name), columns[name])
            else:
                changes.remove(conn, name)
    state = {name: changes.installed(conn, name) for name in catalog.names}
    assert all(v == on for v in state.values()), state


def settle(conn: psycopg.Connection) -> None:
    """Wait until the load generator's backends have exited: they flush their statistics as they exit,
    and their CPU time then counts among the postmaster's reaped children. This session's own statistics
    (the migration's rows) are flushed too, when it next goes idle."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND backend_type = 'client backend'"
        ).fetchone()[0]
    ):
        time.sleep(0.05)
    last = None  # an exiting backend flushes its statistics after it left pg_stat_activity
    while time.monotonic() < deadline and (now := conn.execute(APP_WRITES).fetchone()[0]) != last:
        last = now
        time.sleep(0.3)


def reset_load_rows(target: str) -> None:
    """Remove the tweets and funnel rows the load generator's users (``load_<n>``) gathered, unlogged (as
    a load's own writes are), so every run starts from the same tables: otherwise each run's date-range
    reads return all the tweets of the runs before it, and the funnel's JSON array keeps growing. Its own
    session, which exits: its statistics must not count as the app's writes of the next run."""
    with psycopg.connect(target, autocommit=True) as own:
        with own.transaction():
            changes.suppress_for_load(own)
            for table in ("tweets", "funnel_progress"):
                own.execute(
                    sql.SQL("DELETE FROM {} WHERE user_id LIKE 'load\\_%'").format(sql.Identifier(table))
                )
        own.execute("VACUUM (ANALYZE) tweets, funnel_progress")


def stat(conn: psycopg.Connection, query: str):
    settle(conn)
    return conn.execute(query).fetchone()


def pct(a: float, b: float) -> float:
    """How much lower ``a`` is than ``b``, in % of ``b`` (positive: a cost)."""
    return (b - a) / b * 100


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return f"{fmt.format(min(values))}-{fmt.format(max(values))}"


def log_figures(conn: psycopg.Connection) -> dict:
    entries, inserted, updated, deleted, keys = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE op = 'I' AND statement = 'INSERT'),"
        " count(*) FILTER (WHERE op = 'I' AND statement = 'UPDATE'),"
        " count(*) FILTER (WHERE op = 'D' AND statement IN ('DELETE', 'TRUNCATE')),"
        " count(DISTINCT (table_name, row_key)) FROM migration_audit.row_changes"
    ).fetchone()
    return {
        "entries": entries,
        "inserted": inserted,
        "updated": updated,
        "deleted": deleted,
        "writes": inserted + updated + deleted,
        "keys": keys,
        "bytes": conn.execute(LOG_SIZE).fetchone()[0],
    }


def profile(
    conn: psycopg.Connection, database: str, target: str, concurrency: int, seconds: float, seed: int
):
    """One run with the triggers' inner statements tracked: what the log costs, statement by statement."""
    conn.execute(
        sql.SQL("ALTER DATABASE {} SET pg_stat_statements.track = 'all'").format(sql.Identifier(database))
    )
    conn.execute("SELECT pg_stat_statements_reset()")
    result = loadgen.run(target, concurrency, seconds, seed=seed)
    time.sleep(0.6)
    rows = conn.execute(
        "SELECT toplevel, calls, total_exec_time, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 90)"
        " FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()"
        " AND query NOT LIKE '%pg_stat%' ORDER BY total_exec_time DESC LIMIT 14"
    ).fetchall()
    conn.execute(sql.SQL("ALTER DATABASE {} RESET pg_stat_statements.track").format(sql.Identifier(database)))
    top = sum(r[2] for r in rows if r[0])
    print(
        f"\nprofile at concurrency {concurrency}: {result.total / result.seconds:,.0f} ops/s, statements by server time"
    )
    print(f"  {'level':<6} {'calls':>8} {'total ms':>9} {'% top':>6} {'ms/call':>8}  statement")
    for toplevel, calls, total, _rows, query in rows:
        print(f"  {'top' if toplevel else 'nested':<6} {calls:>8,} {total:>9,.0f} {total / top * 100:>5.1f}% "
              f"{total / calls:>8.3f}  {query}")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--tweets", type=int, default=50_000)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds of each run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of load before each measured run")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--concurrency", default="4,16", help="comma list of sessions")
    parser.add_argument(
        "--setup-sql",
        action="append",
        default=[],
        metavar="SQL",
        help="run in the bench database after the migration, e.g. to try a change of the log's table (repeatable)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="then one run per concurrency with nested statements tracked"
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    load_before = os.getloadavg()
    started = time.monotonic()
    server = local_postgres.ensure_running()
    database = f"bench_changelog_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(**server, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
        # the time each backend spends in the trigger functions (two clock reads per call)
        admin.execute(
            sql.SQL("ALTER DATABASE {} SET track_functions = 'pl'").format(sql.Identifier(database))
        )
    catalog = load_catalog()
    runs: list[Run] = []
    growth = Growth()
    seeds = itertools.count(1)
    snapshot_path = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            source = generate(Path(tmp) / "app.db", users=args.users, tweets=args.tweets)
            settings = Settings(source, database)
            target = conninfo(settings)
            with connect(settings) as conn:
                snapshot_path = default_snapshot_path(settings)
                info = take_snapshot(source, snapshot_path)
                t0 = time.monotonic()
                with Snapshot(info.path) as snap:
                    load_all(conn, snap, catalog, "bench")
                migrated_s = time.monotonic() - t0
                phase.declare(
                    conn, phase.SWITCHED, by="bench", note="changelog_bench: the load generator is the app"
                )
                columns = {
                    name: checksums.Checksum.parse(audit.latest_load(conn, name)["checksum"]).columns
                    for name in catalog.names
                }
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                for statement in args.setup_sql:
                    print(f"setup: {statement}")
                    conn.execute(statement)
                server_cpu = ServerCpu(conn)
                app_rows = dict(conn.execute(
                    "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE schemaname = 'public'"
                ).fetchall())  # fmt: skip
                print(f"migrated {app_rows.get('users', 0):,} users / {app_rows.get('tweets', 0):,} tweets "
                      f"in {migrated_s:.1f} s into {database}; switch declared; load average "
                      f"{load_before[0]:.2f} {load_before[1]:.2f} {load_before[2]:.2f} on {os.cpu_count()} CPUs")  # fmt: skip
                for rnd, (i, c) in itertools.product(range(1, args.rounds + 1), enumerate(levels)):
                    order = MODES if (rnd + i) % 2 else MODES[::-1]
                    for mode in order:
                        set_log(conn, catalog, columns, mode == "on")
                        if mode == "on":
                            writes0 = stat(conn, APP_WRITES)[0]
                        loadgen.run(target, c, args.warmup, seed=next(seeds))
                        calls1, ms1 = stat(conn, TRIGGER_TIME)
                        cpu0, client0 = server_cpu.seconds(), client_cpu()
                        wal0 = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0]
                        result = loadgen.run(target, c, args.seconds, seed=next(seeds))
                        wal = conn.execute(
                            "SELECT pg_current_wal_insert_lsn() - %s::pg_lsn", (str(wal0),)
                        ).fetchone()[0]
                        client = client_cpu() - client0
                        settle(conn)
                        ops = max(result.total, 1)
                        run = Run(
                            mode, c, rnd, result.total / result.seconds, result.percentile(50),
                            result.percentile(95), sum(result.errors.values()), os.getloadavg()[0], ops,
                            (server_cpu.seconds() - cpu0) * 1000 / ops, client * 1000 / ops, float(wal) / ops,
                        )  # fmt: skip
                        if mode == "on":
                            calls2, ms2 = stat(conn, TRIGGER_TIME)
                            run.trigger_calls, run.trigger_ms = calls2 - calls1, ms2 - ms1
                            growth.writes_by_stats += stat(conn, APP_WRITES)[0] - writes0
                        runs.append(run)
                        reset_load_rows(target)
                        print(f"  round {rnd} c={c:<3} triggers {mode:<3} {run.ops_per_s:>7,.0f} ops/s  "
                              f"p50 {run.p50_ms:6.1f} ms  p95 {run.p95_ms:6.1f} ms  server CPU {run.server_ms_per_op:.2f} ms/op  "
                              f"loadgen CPU {run.client_ms_per_op:.2f} ms/op  WAL {run.wal_per_op:,.0f} B/op  "
                              f"errors {run.errors}  load {run.load1:.2f}", flush=True)  # fmt: skip
                set_log(conn, catalog, columns, True)  # as the migration left it
                before = log_figures(conn)
                t0 = time.monotonic()
                removed = sum(changes.compact(conn, name) for name in catalog.names)
                compact_s = time.monotonic() - t0
                after = log_figures(conn)
                conn.execute("VACUUM migration_audit.row_changes")
                after_vacuum = conn.execute(LOG_SIZE).fetchone()[0]
                conn.execute("VACUUM FULL migration_audit.row_changes")
                after_full = conn.execute(LOG_SIZE).fetchone()[0]
                if args.profile:
                    for c in levels:
                        profile(conn, database, target, c, args.seconds, next(seeds))
    finally:
        with psycopg.connect(**server, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
        if snapshot_path is not None:
            for leftover in snapshot_path.parent.glob(snapshot_path.name + "*"):
                leftover.unlink(missing_ok=True)
    load_after = os.getloadavg()
    report(args, levels, runs, growth, before, after, removed, compact_s, after_vacuum, after_full)
    during = [r.load1 for r in runs]
    print(f"\nmachine: {os.cpu_count()} CPUs; load average (1/5/15 min) before {load_before[0]:.2f} {load_before[1]:.2f} "
          f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; 1-min load at the "
          f"end of each run {min(during):.2f}-{max(during):.2f} (median {statistics.median(during):.2f}); "
          f"bench took {(time.monotonic() - started) / 60:.1f} min")  # fmt: skip
    return 0


def median(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


def report(args, levels, runs, growth, before, after, removed, compact_s, after_vacuum, after_full) -> None:
    print(f"\nchange-log cost: {args.rounds} rounds x {len(levels)} concurrencies x triggers on/off, "
          f"{args.seconds:.0f} s measured after {args.warmup:.0f} s warm-up each; medians over the rounds (min-max)")  # fmt: skip
    header = (f"{'sessions':>8} | {'ops/s on':>19} | {'ops/s off':>19} | {'cost':>6} | {'paired cost':>19} | "
              f"{'p50 ms on/off':>13} | {'p95 ms on':>17} | {'p95 ms off':>17} | {'p95 +':>6}")  # fmt: skip
    print(header)
    print("-" * len(header))
    paired_by = {}
    for c in levels:
        on = sorted((r for r in runs if r.concurrency == c and r.mode == "on"), key=lambda r: r.round)
        off = sorted((r for r in runs if r.concurrency == c and r.mode == "off"), key=lambda r: r.round)
        ops_on, ops_off = [r.ops_per_s for r in on], [r.ops_per_s for r in off]
        p95_on, p95_off = [r.p95_ms for r in on], [r.p95_ms for r in off]
        paired = paired_by[c] = [pct(a.ops_per_s, b.ops_per_s) for a, b in zip(on, off, strict=True)]
        print(f"{c:>8} | {median(on, 'ops_per_s'):>6,.0f} ({spread(ops_on):>10}) | "
              f"{median(off, 'ops_per_s'):>6,.0f} ({spread(ops_off):>10}) | "
              f"{pct(median(on, 'ops_per_s'), median(off, 'ops_per_s')):>5.1f}% | "
              f"{statistics.median(paired):>5.1f}% ({spread(paired, '{:.1f}'):>10}) | "
              f"{median(on, 'p50_ms'):>5.1f} / {median(off, 'p50_ms'):>5.1f} | "
              f"{median(on, 'p95_ms'):>5.1f} ({spread(p95_on, '{:.1f}'):>9}) | "
              f"{median(off, 'p95_ms'):>5.1f} ({spread(p95_off, '{:.1f}'):>9}) | "
              f"{-pct(median(on, 'p95_ms'), median(off, 'p95_ms')):>5.1f}%")  # fmt: skip
    print(
        "cost: (median ops/s off - median ops/s on) / median ops/s off; paired cost: the same within each round "
        "(on and off run back to back); p95 +: how much higher the median p95 latency is with the triggers"
    )
    print(
        "\nwhere it goes (medians over the rounds): CPU per app operation of the server (all its processes) and of "
        "the load generator, WAL per operation, the logging function's calls and time (pg_stat_user_functions)"
    )
    header = (f"{'sessions':>8} | {'server CPU ms/op on / off':>25} | {'+':>6} | {'loadgen CPU ms/op on / off':>26} | "
              f"{'WAL B/op on / off':>17} | {'trigger calls/op':>16} | {'trigger ms/call':>15} | {'errors':>6}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for c in levels:
        on = [r for r in runs if r.concurrency == c and r.mode == "on"]
        off = [r for r in runs if r.concurrency == c and r.mode == "off"]
        calls = sum(r.trigger_calls for r in on)
        print(f"{c:>8} | {median(on, 'server_ms_per_op'):>12.2f} / {median(off, 'server_ms_per_op'):<10.2f} | "
              f"{-pct(median(on, 'server_ms_per_op'), median(off, 'server_ms_per_op')):>5.1f}% | "
              f"{median(on, 'client_ms_per_op'):>13.2f} / {median(off, 'client_ms_per_op'):<10.2f} | "
              f"{median(on, 'wal_per_op'):>7,.0f} / {median(off, 'wal_per_op'):<7,.0f} | "
              f"{calls / sum(r.ops for r in on):>16.2f} | "
              f"{sum(r.trigger_ms for r in on) / calls if calls else float('nan'):>15.3f} | "
              f"{sum(r.errors for r in on + off):>6}")  # fmt: skip
    print("CPU-bound cost, from the CPU per operation (what ops/s would lose where the CPU is the limit; less sensitive than ops/s to how busy "
          "the shared machine is): app and server on one machine like here, 1 - (server + loadgen off) / (server + "
          "loadgen on); the database server alone the limit, 1 - server off / server on")  # fmt: skip
    for c in levels:
        on = [r for r in runs if r.concurrency == c and r.mode == "on"]
        off = [r for r in runs if r.concurrency == c and r.mode == "off"]
        server_on, server_off = median(on, "server_ms_per_op"), median(off, "server_ms_per_op")
        both_on, both_off = (
            server_on + median(on, "client_ms_per_op"),
            server_off + median(off, "client_ms_per_op"),
        )
        print(f"{c:>8} sessions: app and server on one machine {pct(1 / both_on, 1 / both_off):.1f}%, "
              f"database server alone {pct(1 / server_on, 1 / server_off):.1f}%")  # fmt: skip

    writes = before["writes"]
    per_million = 1_000_000 / writes if writes else float("nan")
    print(f"\nchange-log growth over every run with triggers (warm-ups included): {writes:,} app row writes "
          f"({before['inserted']:,} rows inserted, {before['updated']:,} updated, {before['deleted']:,} deleted; "
          f"pg_stat_user_tables counted {growth.writes_by_stats:,}) on {before['keys']:,} distinct keys")  # fmt: skip
    print(
        f"{'':>28} | {'entries':>10} | {'per million writes':>18} | {'on disk':>10} | {'per million writes':>18}"
    )
    rows = [
        ("logged", before["entries"], before["bytes"]),
        (f"compacted ({compact_s:.1f} s)", after["entries"], after["bytes"]),
        ("compacted, after VACUUM", after["entries"], after_vacuum),
        ("compacted, after VACUUM FULL", after["entries"], after_full),
    ]
    for label, entries, size in rows:
        print(f"{label:>28} | {entries:>10,} | {entries * per_million:>18,.0f} | {size / 2**20:>7.1f} MB | "
              f"{size * per_million / 2**20:>15.1f} MB")  # fmt: skip
    print(f"per million app row writes: {before['entries'] * per_million:,.0f} entries before compaction, "
          f"{after['entries'] * per_million:,.0f} after (compaction removed {removed:,}); "
          f"row_changes takes {before['bytes'] * per_million / 2**20:,.0f} MB on disk before, "
          f"{after_full * per_million / 2**20:,.0f} MB of live entries after")  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
