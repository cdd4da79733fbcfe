"""A big table's asset as a graph of Dagster steps: plan the rowid ranges, land each range, publish once.

Each range is a step of its own (a dynamic output), so the run's executor spreads the ranges: the
multiprocess executor over a machine's cores, the k8s, celery or docker executors over machines (every
step reads the snapshot from ``SNAPSHOT_DIR``, a location they share). All steps of a run, and of its
re-executions, share one load (the run's root id, move/ranges.py): re-executing a failed run from
failure lands only the ranges that did not land, then publishes.
"""

from dagster import (
    AssetIn,
    AssetsDefinition,
    DynamicOut,
    DynamicOutput,
    Failure,
    In,
    Nothing,
    OpExecutionContext,
    Out,
    graph_asset,
    op,
)

from ..catalog import TableSpec, load_catalog
from ..connect.settings import fan_out_setting
from ..connect.target import connect
from ..move import ranges
from ..move.phase import PhaseError
from ..move.source import Snapshot
from .connect import MigrationResource
from .tables import (
    CODE_VERSION,
    SNAPSHOT_KEY,
    definition_metadata,
    description,
    progress_logger,
    reported,
    target_key,
)

# a big table's steps go before the small tables' when both are ready: the longest path of the run (the
# executor otherwise starts them in graph order, and the ranges waited for every small table's step)
FIRST = {"dagster/priority": "1"}


def _load_id(context: OpExecutionContext) -> str:
    """The load every step of this run and of its re-executions share."""
    return context.run.root_run_id or context.run_id


def fanned_asset(spec: TableSpec) -> AssetsDefinition:
    """``spec``'s table asset, loaded in ranges of RANGE_ROWS source rows, one step each."""
    table = spec.name

    # the ranges need only the snapshot (the shadow has no foreign keys yet): they land while the parent
    # tables load; the publish, which adds the foreign keys, waits for the parents
    upstream = ["snapshot", *spec.parents]

    @op(name=f"{table}__plan", ins={"snapshot": In(Nothing)}, out=DynamicOut(dict), tags=FIRST)
    def plan(context: OpExecutionContext, migration: MigrationResource):
        rows = fan_out_setting().range_rows
        with Snapshot(migration.snapshot_path) as snapshot, migration.connection() as conn:
            try:
                planned = ranges.prepare(conn, snapshot, load_catalog(), table, _load_id(context), rows)
            except PhaseError as err:
                raise Failure(description=str(err)) from err
        context.log.info(f"{table}: {len(planned)} ranges of up to {rows:,} source rows (RANGE_ROWS)")
        for rng in planned:
            yield DynamicOutput(rng.as_dict(), mapping_key=f"range_{rng.index}")

    @op(name=f"{table}__range", tags=FIRST)
    def land(context: OpExecutionContext, migration: MigrationResource, rng: dict) -> dict:
        part = ranges.Range(**rng)
        with Snapshot(migration.snapshot_path) as snapshot, migration.connection() as conn:
            conn.execute(
                "SELECT set_config('application_name', %s, false)", (f"migrate {table} {part.index}",)
            )
            total = part.last - part.first + 1
            landed = ranges.land(
                conn, snapshot, load_catalog(), table, _load_id(context), part, context.run_id,
                progress_logger(context, total),
            )  # fmt: skip
        verb = "had landed before (run " + landed.run_id + ")" if landed.already else "landed"
        context.log.info(
            f"{table} range {part.index} (rowids {part.first}..{part.last}) {verb}: {landed.source_rows:,} "
            f"source rows, {landed.rejected_rows:,} rejected by the value rules"
        )
        return {
            "index": landed.index,
            "source_rows": landed.source_rows,
            "rejected_rows": landed.rejected_rows,
        }

    @op(name=f"{table}__publish", ins={p: In(Nothing) for p in spec.parents}, out=Out(Nothing), tags=FIRST)
    def publish(context: OpExecutionContext, migration: MigrationResource, landed: list[dict]) -> None:
        with Snapshot(migration.snapshot_path) as snapshot, migration.connection() as conn:
            try:
                result = ranges.publish(
                    conn, snapshot, load_catalog(), table, _load_id(context), context.run_id,
                    migration.shrink_policy(), lambda: connect(migration.settings),
                    fan_out_setting().index_jobs,
                )  # fmt: skip
            except PhaseError as err:
                raise Failure(description=str(err)) from err
            metadata = reported(context, spec, result, conn)
        metadata["ranges"] = len(landed)
        context.add_output_metadata(metadata)

    keys = {"snapshot": SNAPSHOT_KEY} | {p: target_key(p) for p in spec.parents}

    def compose(**done):
        landed = plan(snapshot=done["snapshot"]).map(land).collect()
        return publish(landed=landed, **{p: done[p] for p in spec.parents})

    return graph_asset(
        compose,
        key=target_key(table),
        ins={name: AssetIn(key=keys[name], dagster_type=Nothing) for name in upstream},
        group_name="target",
        kinds={"postgres"},
        code_version=CODE_VERSION,
        owners=["team:migration"],
        metadata=definition_metadata(spec),
        description=description(spec)
        + " Loaded in rowid ranges of RANGE_ROWS rows, one step each (FAN_OUT_TABLES), then published at once.",
    )
