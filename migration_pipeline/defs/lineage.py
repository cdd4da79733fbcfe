"""What the UI shows about each target table: its schema from schema/, column lineage, code version."""

from dagster import (
    AssetKey,
    TableColumn,
    TableColumnConstraints,
    TableColumnDep,
    TableColumnLineage,
    TableSchema,
)

from ..catalog import TableSpec

CONVERSIONS = {
    "text": "SQLite TEXT → {type}: valid UTF-8, no NUL{limit}; an integer becomes its decimal text",
    "timestamptz": "SQLite DATETIME → timestamptz: 'YYYY-MM-DD HH:MM:SS' as UTC, ISO 8601, epoch s/ms, Twitter dates",
    "jsonb": "SQLite JSON text → jsonb after a strict parse (no NaN, quotes or reprs); SQL NULL stays NULL",
    "boolean": "SQLite BOOLEAN 0/1, '0'/'1', 'true'/'false' → boolean",
    "integer": "SQLite INTEGER → integer within PostgreSQL's range (integral reals and integer text too)",
}


_SQL_NAMES = {"bool": "boolean", "int4": "integer"}


def _type(column) -> str:
    if column.max_length:
        return f"varchar({column.max_length})"
    return _SQL_NAMES.get(column.pg_type, column.pg_type)


def _conversion(c) -> str:
    return CONVERSIONS[c.kind].format(
        type=_type(c), limit=f", at most {c.max_length} characters" if c.max_length else ""
    )


def table_schema(spec: TableSpec) -> TableSchema:
    unique = {key[0] for key in (spec.primary_key, *spec.unique) if len(key) == 1}
    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=_type(c),
                description=_conversion(c),
                constraints=TableColumnConstraints(nullable=not c.not_null, unique=c.name in unique),
            )
            for c in spec.columns
        ]
    )


def column_lineage(source: AssetKey, columns) -> TableColumnLineage:
    """Each loaded column comes from the column of the same name in the app's SQLite table."""
    return TableColumnLineage({c: [TableColumnDep(asset_key=source, column_name=c)] for c in columns})


def lineage_markdown(spec: TableSpec, source: AssetKey, columns) -> str:
    """Column lineage as a table the asset page shows (Dagster OSS keeps ``dagster/column_lineage`` in the
    event data without drawing it): each column, the source column it comes from, the conversion."""
    loaded = set(columns)
    rows = [
        f"| `{c.name}` | "
        + (
            f"`{source.to_user_string()}`.`{c.name}`"
            if c.name in loaded
            else "— (not in the source: default)"
        )
        + f" | {_conversion(c)} |"
        for c in spec.columns
    ]
    return "\n".join(["| column | comes from | conversion |", "|---|---|---|", *rows])
