"""The project's side of ``migrate_bench.py``: its migration and its checks as the bench's children
(``--phase migrate`` / ``--phase check``), and what ``pg_stat_statements`` saw of a migration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from migration_pipeline.catalog import load_catalog
from migration_pipeline.connect.settings import Settings
from migration_pipeline.connect.target import connect


def migrate(source: str, database: str, snapshot: str) -> None:
    from migration_pipeline.move.load import load_all
    from migration_pipeline.move.source import Snapshot, take_snapshot

    settings = Settings(Path(source), database)
    with connect(settings) as conn:
        info = take_snapshot(Path(source), Path(snapshot))
        with Snapshot(info.path) as snap:
            results = load_all(conn, snap, load_catalog(), "bench")
    for name, r in results.items():
        print(f"{name}\t{r.source_rows}\t{r.loaded_rows}\t{r.rejected_rows}\t{r.seconds:.2f}")


def convert_alone(snapshot: str, table: str) -> None:
    """The client's side of ``table``'s COPY without a server, best of 3: reading the snapshot, and reading
    and converting it into what stage.py sends (binary COPY tuples where compiled, else COPY lines)."""
    from migration_pipeline.move import copy_write
    from migration_pipeline.move.source import Snapshot
    from migration_pipeline.move.stage import plan, plan_columns

    spec = load_catalog().table(table)
    binary = copy_write.available("utf-8")
    with Snapshot(Path(snapshot)) as snap:
        columns, _ = plan_columns(snap, spec)
        converting = plan(spec, columns)
        timings = {"read": [], "convert": []}
        for _ in range(3):
            convert = lambda batch: converting.convert_columns(batch, None, "utf-8", binary)  # noqa: E731
            for step, work in (("read", lambda batch: None), ("convert", convert)):
                start, rows = time.perf_counter(), 0
                for batch in snap.stream_columns(table, columns):
                    work(batch)
                    rows += len(batch[0])
                timings[step].append(time.perf_counter() - start)
    read, both = min(timings["read"]), min(timings["convert"])
    sent = "binary COPY tuples" if binary else "COPY lines"
    print(f"reading SQLite {read:.2f} s, reading and converting {both:.2f} s (the value rules and the {sent} "
          f"{both - read:.2f} s) for {rows:,} rows")  # fmt: skip


def load_job():
    """The ``migrate`` job's loads without their checks: the snapshot and every table (for the bench and
    for timing a fan-out; the checks are timed by ``--checks``)."""
    from dagster import AssetSelection, Definitions, define_asset_job

    from migration_pipeline import definitions
    from migration_pipeline.defs.tables import SNAPSHOT_KEY

    base = definitions.defs
    selection = (AssetSelection.assets(SNAPSHOT_KEY) | AssetSelection.groups("target")).without_checks()
    return Definitions(
        assets=list(base.assets),
        asset_checks=list(base.asset_checks),
        resources=base.resources,
        executor=base.executor,
        jobs=[define_asset_job("load_only", selection=selection)],
    ).resolve_job_def("load_only")


def migrate_dagster(source: str, database: str, snapshot: str, workers: int, range_rows: int) -> None:
    """The loads as a Dagster run on the multiprocess executor with ``workers`` processes at a time,
    big tables fanned out in ranges of ``range_rows`` (FAN_OUT_TABLES), the snapshot in the directory
    ``snapshot``.dir (SNAPSHOT_DIR)."""
    import tempfile

    from dagster import DagsterInstance, execute_job, reconstructable

    os.environ.update(SQLITE_PATH=source, PG_DATABASE=database, RANGE_ROWS=str(range_rows),
                      SNAPSHOT_DIR=f"{snapshot}.dir")  # fmt: skip
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")])
    )
    config = {
        "execution": {"config": {"multiprocess": {"max_concurrent": workers}}}
    }  # the project's executor (definitions.py)
    with tempfile.TemporaryDirectory() as home, DagsterInstance.local_temp(home) as instance:
        result = execute_job(reconstructable(load_job), instance, run_config=config)
        if not result.success:
            raise SystemExit(
                f"the Dagster run failed: {[e.message for e in result.all_events if e.is_failure]}"
            )
        for stats in instance.get_run_step_stats(result.run_id):  # each step's own time
            if "tweets." in stats.step_key:
                print(f"step\t{stats.step_key}\t{stats.end_time - stats.start_time:.2f}")
    with connect(Settings(Path(source), database)) as conn:
        for name, read, loaded, rejected, seconds in conn.execute(
            "SELECT table_name, source_rows, loaded_rows, rejected_rows,"
            " extract(epoch FROM finished_at - started_at) FROM migration_audit.table_loads WHERE run_id = %s",
            (result.run_id,),
        ):
            print(f"{name}\t{read}\t{loaded}\t{rejected}\t{seconds:.2f}")


def check(database: str, snapshot: str, table: str, group: str) -> None:
    """Time the checks of one step of one table (what one Dagster check step runs)."""
    from migration_pipeline.prove import checks

    catalog = load_catalog()
    with connect(Settings(Path("unused"), database)) as conn:
        by_step = {(t, step): selected for t, step, selected in checks.steps(catalog)}
        for check in by_step.get((table, group), ()):
            start = time.perf_counter()
            (outcome,) = checks.run(conn, catalog, Path(snapshot), [(table, check)])
            print(f"{check.name}\t{time.perf_counter() - start:.2f}\t{outcome.passed}")


def parallel_checks(script: str, database: str, snapshot: Path, table: str) -> tuple[float, str]:
    """Each check step of ``table`` in its own process, one per core at a time, the JSON step first."""
    from concurrent.futures import ThreadPoolExecutor

    from migration_pipeline.prove import checks

    def step(group: str) -> str:
        args = ["--phase", "check", "--database", database, "--snapshot", str(snapshot), "--group", group]
        return subprocess.run([sys.executable, script, *args], capture_output=True, text=True,
                              check=True).stdout  # fmt: skip

    groups = sorted((n for t, n, _ in checks.steps(load_catalog()) if t == table), key=lambda g: g != "json")
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        outputs = list(pool.map(step, groups))
    return time.perf_counter() - start, "".join(outputs)


def statements(server: dict, database: str) -> list[tuple]:
    """The statements run in ``database`` (its ``pg_stat_statements`` entries), longest total time first:
    (toplevel, calls, seconds, rows, the query's first 100 characters)."""
    with psycopg.connect(**{**server, "dbname": database}, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        return conn.execute(
            "SELECT toplevel, calls, total_exec_time / 1000, rows, left(regexp_replace(query, '\\s+', ' ', 'g'), 100)"
            " FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND query NOT LIKE '%%pg_stat_statements%%' ORDER BY total_exec_time DESC"
        ).fetchall()  # fmt: skip
