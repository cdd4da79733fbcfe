"""Benchmark: the project's full migration against the bulk-load floor, ``\\copy`` into the full schema and
pgloader, in one run on the same server, each run into a fresh database.

    python bench/migrate_bench.py [--users 10000] [--tweets 1000000] [--repeat 1] [--cases a,b,c,d,e]
                                  [--sources app,clean] [--pgloader-cast app|stock] [--profile] [--checks]
    python bench/migrate_bench.py --phase migrate --source S --database D --snapshot P

Per source, ``app`` (the app-shaped sample with its broken rows) and ``clean`` (the same generator
without any, ``generate(clean=True)``): the SQLite file is generated, migrated once by the project
(untimed) and the rows that landed exported to CSV (untimed), then each case runs ``--repeat`` times,
the cases in a rotating order, a CHECKPOINT before each:

(a) the floor, loaded as pg_restore loads: ``psql \\copy`` of the CSV into bare tables (schema/'s tables
    without primary/unique keys, foreign keys or indexes, read from PostgreSQL's catalog), then the keys,
    the indexes (GIN included) and the foreign keys, with the project's ``maintenance_work_mem``;
(b) ``psql \\copy`` of the same CSV into the full schema (keys, indexes and foreign keys present);
(c) pgloader, when installed (``bench/_pgloader.py``): the SQLite file into the same bare tables, then
    the same keys, indexes and foreign keys; afterwards (untimed) its tables are compared with the rows
    the project landed;
(d) the project's full migration: ``load_all`` in a child process, as the ``migrate`` job runs it without
    Dagster (snapshot, conversion, quarantine, keys, indexes, checksum, change log, ANALYZE), one stream;
(e) the same through Dagster: the ``migrate`` job's loads (its checks left out, as in (d)) as one run on
    the multiprocess executor, ``--workers`` step processes at a time, tweets fanned out in ranges of
    ``--range-rows`` (FAN_OUT_TABLES), each range a step; step processes' start-up included.

On a source with bad rows (c) runs once whatever ``--repeat`` says: pgloader retries its COPY around
each rejected row, which takes minutes at 1M tweets.

It prints seconds, rows/s (rows read: the CSV's for a/b, the source's for c/d), the ratio to (a) and
the peak RSS of the measured processes (psql, pgloader, the project's child and, for (e), every step
process: the largest VmHWM of any one of them, not the server's), per run and as a summary table of medians, with the machine's load average. ``--profile``
adds one run of (d) with ``pg_stat_statements.track = all``: its statements by total time, and the client's
side of the tweets' ``COPY`` timed alone on its snapshot (reading SQLite; reading and converting). ``--checks``
times the checks of ``tweets`` on the last (d) database, each check step a process, as Dagster runs them.

``--phase migrate`` (other harnesses time the migration alone with it) migrates S into database D
through the snapshot P and prints one line per table: name, source, loaded, rejected rows, seconds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import _floor
import _pgloader
import _project
import psycopg

from migration_pipeline.catalog import load_catalog
from migration_pipeline.connect import local_postgres

ROOT = Path(__file__).resolve().parent
CASES = {"a": "floor: \\copy bare + keys/indexes/FKs", "b": "\\copy into the full schema",
         "c": "pgloader bare + keys/indexes/FKs", "d": "the project's full migration",
         "e": "the project through Dagster, fanned out"}  # fmt: skip


@dataclass
class Result:
    case: str
    seconds: float
    rows: int  # rows read
    rss: int
    phases: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


class Bench:
    def __init__(self, args, server: dict, work: Path):
        self.args, self.server, self.work = args, server, work
        self.catalog, self.work_mem = load_catalog(), _floor.maintenance_work_mem()
        self.tag = uuid.uuid4().hex[:6]

    def migrate_child(
        self, source: Path, database: str, fanned: bool = False
    ) -> tuple[_floor.Run, list[list[str]]]:
        snapshot = self.work / f"{database}.snapshot.db"
        snapshot.unlink(missing_ok=True)
        argv = ["--phase", "dagster" if fanned else "migrate", "--source", str(source), "--database", database,
                "--snapshot", str(snapshot), "--workers", str(self.args.workers),
                "--range-rows", str(self.args.range_rows)]  # fmt: skip
        run = _floor.run([sys.executable, __file__, *argv])
        if run.code != 0:
            raise SystemExit(f"the migration failed:\n{run.err[-3000:]}")
        return run, [line.split("\t") for line in run.out.strip().splitlines()]

    def forget(self, database: str) -> None:
        """Drop the database and the snapshot the migration took for it (with its side files)."""
        _floor.drop_database(self.server, database)
        shutil.rmtree(self.work / f"{database}.snapshot.db.dir", ignore_errors=True)  # (e)'s SNAPSHOT_DIR
        for leftover in self.work.glob(f"{database}.snapshot.db*"):
            leftover.unlink()

    def prepare(self, name: str, source: Path) -> tuple[Path, int, int]:
        """The project's migration once (untimed): the rows that landed, as CSV."""
        database = f"bench_prep_{self.tag}"
        _floor.fresh_database(self.server, database)
        run, tables = self.migrate_child(source, database)
        csv_dir = self.work / f"csv-{name}"
        shutil.rmtree(csv_dir, ignore_errors=True)
        csv_dir.mkdir()
        _floor.export_csv(self.server, database, self.catalog, csv_dir)
        self.forget(database)
        rejected = {t[0]: int(t[3]) for t in tables if int(t[3])}
        read, landed = sum(int(t[1]) for t in tables), sum(int(t[2]) for t in tables)
        print(f"  prepared in {run.seconds:.1f} s (the project's migration, untimed): {read:,} source rows, "
              f"{landed:,} landed, quarantined {rejected or 'none'}; exported to {csv_dir}")  # fmt: skip
        return csv_dir, read, landed

    def post_load(self, database: str, post: _floor.PostLoad, result: Result, strict: bool = True) -> None:
        for phase in ("keys", "indexes", "FKs"):
            run = _floor.psql(self.server, database, post.script(phase, self.work_mem), stop_on_error=strict)
            result.phases[phase], result.seconds = run.seconds, result.seconds + run.seconds
            result.rss = max(result.rss, run.rss)
            errors = [line.split("ERROR:", 1)[1].strip() for line in run.err.splitlines() if "ERROR:" in line]
            if errors:
                n = len(post.phases[phase])
                result.notes.append(
                    f"{phase}: {len(errors)} of {n} statements failed; the first: {errors[0]}"
                )

    def bare(self, database: str) -> _floor.PostLoad:
        _floor.fresh_database(self.server, database, self.catalog.public_ddl)
        with psycopg.connect(**{**self.server, "dbname": database}, autocommit=True) as conn:
            return _floor.strip_to_bare(conn)

    def case(self, case: str, database: str, source: Path, csv_dir: Path, landed: int, read: int) -> Result:
        copy = _floor.copy_script(self.catalog, csv_dir)
        if case in "ab":
            post = self.bare(database) if case == "a" else None
            if case == "b":
                _floor.fresh_database(self.server, database, self.catalog.public_ddl)
            _floor.checkpoint(self.server)
            run = _floor.psql(self.server, database, copy)
            result = Result(case, run.seconds, landed, run.rss, {"copy": run.seconds})
            if post:
                self.post_load(database, post, result)
            return result
        if case == "c":
            post = self.bare(database)
            _floor.checkpoint(self.server)
            root = self.work / f"pgloader-{source.stem}"
            run, counts = _pgloader.load(
                self.server, database, source, root, self.work_mem, self.args.pgloader_cast
            )
            result = Result(case, run.seconds, read, run.rss, {"pgloader": run.seconds})
            self.post_load(database, post, result, strict=False)
            rejected, reasons = _pgloader.rejects(root, run.out + run.err)
            loaded = sum(rows for _, rows in counts.values())
            result.notes += [f"pgloader loaded {loaded:,} rows, reported {sum(e for e, _ in counts.values()):,} "
                             f"errors, rejected {rejected:,} rows ({root})"] + reasons  # fmt: skip
            result.notes += _pgloader.compare(self.server, database, self.catalog, csv_dir)
            return result
        _floor.fresh_database(self.server, database)
        _floor.checkpoint(self.server)
        run, lines = self.migrate_child(source, database, fanned=case == "e")
        tables = [t for t in lines if t[0] != "step"]
        quarantined = sum(int(t[3]) for t in tables)
        split = {t[0]: float(t[4]) for t in tables if float(t[4]) >= 0.5}
        notes = [f"{quarantined:,} rows quarantined"]
        steps = {t[1]: float(t[2]) for t in lines if t[0] == "step"}
        ranges = [seconds for key, seconds in steps.items() if "__range[" in key]
        if ranges:  # (e): what one worker does with one range (the tweets table's rows split evenly)
            rows = next(int(t[1]) for t in tables if t[0] == "tweets") / len(ranges)
            each = statistics.median(ranges)
            notes.append(f"tweets: {len(ranges)} range steps of {rows:,.0f} rows on average, {self.args.workers} at a time: "
                         f"median {each:.1f} s a range = {rows / each:,.0f} rows/s per worker; "
                         + ", ".join(f"{k.split('.')[-1]} {v:.1f} s" for k, v in steps.items() if "__range[" not in k))  # fmt: skip
        return Result(case, run.seconds, read, run.rss, split, notes)

    def profile(self, source: Path) -> None:
        database = f"bench_profile_{self.tag}"
        _floor.fresh_database(self.server, database)
        with psycopg.connect(**self.server, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE \"{database}\" SET pg_stat_statements.track = 'all'")
        _floor.checkpoint(self.server)
        run, _ = self.migrate_child(source, database)
        rows = _project.statements(self.server, database)
        alone = _floor.run([sys.executable, __file__, "--phase", "convert", "--snapshot",
                            str(self.work / f"{database}.snapshot.db")])  # fmt: skip
        self.forget(database)
        top = sum(r[2] for r in rows if r[0])
        print(f"\n  profile (d), pg_stat_statements.track = all: {run.seconds:.1f} s wall, {top:.1f} s in top-level "
              f"statements ({len(rows)} statements); the 20 longest:")  # fmt: skip
        print(f"    {'level':<6} {'calls':>8} {'seconds':>8} {'% wall':>6} {'rows':>10}  statement")
        for toplevel, calls, seconds, nrows, query in rows[:20]:
            print(f"    {'top' if toplevel else 'nested':<6} {calls:>8,} {seconds:>8.2f} "
                  f"{100 * seconds / run.seconds:>5.1f}% {nrows:>10,}  {query}")  # fmt: skip
        print(
            f"  the client's side of the tweets COPY timed alone (no server), best of 3: {alone.out.strip()}"
        )

    def source(self, name: str) -> list[Result]:
        source = self.work / f"bench-{name}-{self.args.users}-{self.args.tweets}.db"
        for leftover in (source, Path(f"{source}-wal"), Path(f"{source}-shm")):
            leftover.unlink(missing_ok=True)
        argv = ["--out", str(source), "--users", str(self.args.users), "--tweets", str(self.args.tweets)]
        gen = _floor.run([sys.executable, "-m", "migration_pipeline.samples.sample_data", *argv,
                          *(["--clean"] if name == "clean" else [])])  # fmt: skip
        if gen.code != 0:
            raise SystemExit(f"the generator failed:\n{gen.err[-2000:]}")
        print(f"\n== source {name}: {self.args.users:,} users + {self.args.tweets:,} tweets generated in "
              f"{gen.seconds:.1f} s ({source.stat().st_size / 2**20:.0f} MB)")  # fmt: skip
        csv_dir, read, landed = self.prepare(name, source)
        results, cases = [], self.args.cases
        for rep in range(self.args.repeat):
            for case in cases[rep % len(cases) :] + cases[: rep % len(cases)]:
                if case == "c" and rep and landed < read:
                    print(f"  [{name} {rep + 1}/{self.args.repeat}] (c) runs once on a source with bad rows "
                          "(pgloader retries its COPY batch by batch around each one: minutes at 1M tweets)")  # fmt: skip
                    continue
                database = f"bench_{case}_{self.tag}"
                result = self.case(case, database, source, csv_dir, landed, read)
                if case == "d" and self.args.checks and rep == self.args.repeat - 1:
                    total, out = _project.parallel_checks(
                        __file__, database, self.work / f"{database}.snapshot.db", "tweets"
                    )
                    result.notes.append(
                        f"checks of tweets: {total:.1f} s wall, steps {os.cpu_count()} at a time"
                    )
                    result.notes += [f"  {line}" for line in out.strip().splitlines()]
                if not (self.args.keep and rep == self.args.repeat - 1):
                    self.forget(database)
                split = " + ".join(f"{k} {v:.1f}" for k, v in result.phases.items())
                print(f"  [{name} {rep + 1}/{self.args.repeat}] ({case}) {result.seconds:6.1f} s  "
                      f"{result.rows / result.seconds:>9,.0f} rows/s  RSS {result.rss / 2**20:5.0f} MB  "
                      f"load {os.getloadavg()[0]:.2f}  [{split}]")  # fmt: skip
                for note in dict.fromkeys(result.notes):
                    print(f"      {note}")
                results.append(result)
        if self.args.profile and "d" in cases:
            self.profile(source)
        if not self.args.keep:
            shutil.rmtree(csv_dir)
            for leftover in (source, Path(f"{source}-wal"), Path(f"{source}-shm")):
                leftover.unlink(missing_ok=True)
        return results


def _load_sampler(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(5):
        samples.append(os.getloadavg()[0])


def _summary(by_source: dict[str, list[Result]], repeat: int) -> None:
    print(
        f"\n== summary (median of {repeat}; rows/s over the rows each case reads; x floor = seconds / (a)'s)"
    )
    print("| source | case | rows read | seconds | range | rows/s | × floor | peak RSS | split (median s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, results in by_source.items():
        medians = {}
        for case in dict.fromkeys(r.case for r in results):
            mine = [r for r in results if r.case == case]
            medians[case] = seconds = statistics.median(r.seconds for r in mine)
            floor = medians.get("a")
            split = ", ".join(
                f"{k} {statistics.median(r.phases.get(k, 0) for r in mine):.1f}" for k in mine[0].phases
            )
            spread = (
                f"{min(r.seconds for r in mine):.1f}–{max(r.seconds for r in mine):.1f}" if repeat > 1 else ""
            )
            print(f"| {name} | ({case}) {CASES[case]} | {mine[0].rows:,} | {seconds:.1f} | {spread} | "
                  f"{mine[0].rows / seconds:,.0f} | {f'{seconds / floor:.2f}×' if floor else '–'} | "
                  f"{max(r.rss for r in mine) / 2**20:.0f} MB | {split} |")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--tweets", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (the summary shows medians)")
    parser.add_argument("--cases", default="a,b,c,d,e", help="comma list of a, b, c, d, e (see above)")
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 2, help="(e): step processes at a time"
    )
    parser.add_argument("--range-rows", type=int, default=250_000, help="(e): source rows per range")
    parser.add_argument("--sources", default="app,clean", help="comma list of app, clean")
    parser.add_argument("--pgloader-cast", choices=("app", "stock"), default="app",
                        help="app: epoch timestamps cast by bench/pgloader_app.lisp; stock: pgloader's rules")  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="one more run of (d) with pg_stat_statements")
    parser.add_argument("--checks", action="store_true", help="time the checks of tweets after the last (d)")
    parser.add_argument("--keep", action="store_true", help="keep the last databases and the files")
    for hidden in ("--phase", "--source", "--database", "--snapshot", "--group"):
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase == "migrate":
        _project.migrate(args.source, args.database, args.snapshot)
        return 0
    if args.phase == "dagster":
        _project.migrate_dagster(args.source, args.database, args.snapshot, args.workers, args.range_rows)
        return 0
    if args.phase == "convert":
        _project.convert_alone(args.snapshot, "tweets")
        return 0
    if args.phase == "check":
        _project.check(args.database, args.snapshot, "tweets", args.group)
        return 0
    args.cases = [c for c in args.cases.split(",") if c]
    if set(args.cases) - set(CASES) or not args.cases:
        parser.error(f"--cases: a comma list of {', '.join(CASES)}")
    if "c" in args.cases and _pgloader.BINARY is None:
        print("(c) skipped: no pgloader on PATH (apt-get install pgloader)")
        args.cases.remove("c")
    work = ROOT / "work"
    work.mkdir(exist_ok=True)
    server = local_postgres.ensure_running()
    bench = Bench(args, server, work)
    with psycopg.connect(**server) as conn:
        pg = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
        settings = dict(conn.execute("SELECT name, setting || coalesce(unit, '') FROM pg_settings WHERE name IN "
                                     "('shared_buffers', 'max_wal_size', 'max_parallel_maintenance_workers')"))  # fmt: skip
    print(f"migrate_bench: {args.users:,} users + {args.tweets:,} tweets, cases {','.join(args.cases)}, "
          f"repeat {args.repeat}; {pg} (embedded, {local_postgres.state_dir()}), {settings}; "
          f"maintenance_work_mem '{bench.work_mem}' (the project's) for the post-load phases; "
          f"{_pgloader.version() or 'no pgloader'}; {os.cpu_count()} CPUs, load average {os.getloadavg()}")  # fmt: skip
    samples, stop = [], threading.Event()
    threading.Thread(target=_load_sampler, args=(samples, stop), daemon=True).start()
    started = time.perf_counter()
    by_source = {name: bench.source(name) for name in args.sources.split(",")}
    stop.set()
    _summary(by_source, args.repeat)
    if samples:
        print(f"\nload average (1 min) during the run, every 5 s: min {min(samples):.2f}, "
              f"median {statistics.median(samples):.2f}, max {max(samples):.2f} on {os.cpu_count()} CPUs; "
              f"the whole run took {(time.perf_counter() - started) / 60:.1f} min")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
