"""The target schema, read from the DDL files in ``schema/`` (the single source of truth).

In:  the ``*.sql`` files of the schema directory, parsed with PostgreSQL's own grammar (pglast).
Out: a :class:`Catalog` of :class:`TableSpec` (columns with type, length limit, NOT NULL, default,
     serial; primary key; UNIQUE, CHECK and FOREIGN KEY constraints) in foreign-key load order,
     plus the DDL text to apply. A ``-- migration: optional_in_source`` comment line directly above a
     ``CREATE TABLE`` marks a table the app's SQLite database may lack (``TableSpec.optional_in_source``):
     every other table must be in the source.
Fails: :class:`SchemaError` when a file holds a statement this project cannot describe (an unknown
     column type, a foreign key cycle, a reference to an unknown table). Nothing here touches a database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

from pglast import ast, parse_sql
from pglast.enums import ConstrType
from pglast.parser import scan
from pglast.stream import RawStream
from pglast.visitors import Visitor

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
# The app's own SQLite DDL (not PostgreSQL: load_catalog reads only schema/*.sql), for the sample generator
# and the rollback export, which writes the app's format.
SQLITE_DIR = SCHEMA_DIR / "sqlite"
SQLITE_APP_DDL = (SQLITE_DIR / "app.sql").read_text()
SQLITE_QUEUE_DDL = (SQLITE_DIR / "analysis_queue.sql").read_text()  # tables the app never creates
APP_SCHEMA_FILE = "010_twitter.sql"

# PostgreSQL type name -> the converter kind that turns a SQLite value into it.
_KINDS = {
    "varchar": "text",
    "text": "text",
    "timestamptz": "timestamptz",
    "jsonb": "jsonb",
    "bool": "boolean",
    "int4": "integer",
    "serial": "integer",
}
# Directives in ``-- migration: <name>`` comment lines directly above a statement (before it, after the
# previous one): what the DDL cannot say about a table's source.
_DIRECTIVE = re.compile(r"^--\s*migration:\s*(\w+)", re.MULTILINE)
OPTIONAL_IN_SOURCE = "optional_in_source"  # the app's SQLite database may lack the table
_DIRECTIVES = {OPTIONAL_IN_SOURCE}


class SchemaError(ValueError):
    """The DDL in schema/ cannot be turned into table specs."""


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str  # as PostgreSQL names it: varchar, text, timestamptz, jsonb, bool, int4, serial
    kind: str  # converter kind: text, timestamptz, jsonb, boolean, integer
    max_length: int | None = None
    not_null: bool = False
    has_default: bool = False
    serial: bool = False


@dataclass(frozen=True)
class ForeignKey:
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


@dataclass(frozen=True)
class Check:
    name: str | None
    expression: str  # SQL boolean expression over the table's columns
    columns: tuple[str, ...] = ()  # the columns the expression reads


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]
    unique: tuple[tuple[str, ...], ...] = ()  # UNIQUE constraints other than the primary key
    checks: tuple[Check, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    indexes: tuple[str, ...] = field(default=())  # names of CREATE INDEX statements on the table
    # the app's SQLite database may lack this table (it is then created empty); any other table missing
    # from the source means the source is not the app's database
    optional_in_source: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def parents(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(fk.parent for fk in self.foreign_keys if fk.parent != self.name))

    @property
    def serial_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.serial)


@dataclass(frozen=True)
class Catalog:
    tables: tuple[TableSpec, ...]  # in load order: every parent before its children
    ddl: tuple[str, ...]  # the schema files' text, in file order
    # the statements creating the migrated (unqualified) tables and their indexes, without the audit
    # schema: what conformance re-creates in a scratch schema, touching no table in use
    public_ddl: tuple[str, ...] = ()

    def table(self, name: str) -> TableSpec:
        for t in self.tables:
            if t.name == name:
                return t
        raise KeyError(f"no table {name!r} in schema/")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tables)

    def children(self, name: str) -> tuple[tuple[TableSpec, ForeignKey], ...]:
        """Tables (and the foreign key) that reference ``name``."""
        return tuple(
            (t, fk) for t in self.tables for fk in t.foreign_keys if fk.parent == name and t.name != name
        )


def _names(nodes) -> tuple[str, ...]:
    return tuple(n.sval for n in nodes or ())


def _check(con: ast.Constraint) -> Check:
    refs: list[str] = []

    class _Refs(Visitor):
        def visit_ColumnRef(self, ancestors, node):  # noqa: N802 (pglast's naming)
            refs.append(node.fields[-1].sval)

    _Refs()(con.raw_expr)
    return Check(con.conname, RawStream()(con.raw_expr), tuple(dict.fromkeys(refs)))


def _column(cdef: ast.ColumnDef, table_constraints: list) -> Column:
    type_name = cdef.typeName.names[-1].sval
    kind = _KINDS.get(type_name)
    if kind is None:
        raise SchemaError(f"column {cdef.colname}: type {type_name!r} has no converter")
    max_length = None
    if type_name == "varchar" and cdef.typeName.typmods:
        max_length = cdef.typeName.typmods[0].val.ival
    not_null = has_default = False
    for con in cdef.constraints or ():
        if con.contype == ConstrType.CONSTR_NOTNULL:
            not_null = True
        elif con.contype == ConstrType.CONSTR_DEFAULT:
            has_default = True
        elif con.contype == ConstrType.CONSTR_PRIMARY:
            not_null = True
            table_constraints.append(("pk", (cdef.colname,)))
        elif con.contype == ConstrType.CONSTR_UNIQUE:
            table_constraints.append(("unique", (cdef.colname,)))
        elif con.contype == ConstrType.CONSTR_FOREIGN:
            fk = ForeignKey((cdef.colname,), con.pktable.relname, _names(con.pk_attrs))
            table_constraints.append(("fk", fk))
        elif con.contype == ConstrType.CONSTR_CHECK:
            table_constraints.append(("check", _check(con)))
    serial = type_name == "serial"
    return Column(
        name=cdef.colname,
        pg_type=type_name,
        kind=kind,
        max_length=max_length,
        not_null=not_null or serial,
        has_default=has_default or serial,
        serial=serial,
    )


def _directives(encoded: bytes, start: int, end: int) -> set[str]:
    """The ``-- migration: <name>`` directives in the comments of ``encoded[start:end]``."""
    found = set()
    for token in scan(encoded[start:end].decode()):
        if token.name == "SQL_COMMENT":
            found.update(_DIRECTIVE.findall(encoded[start + token.start : start + token.end + 1].decode()))
    unknown = found - _DIRECTIVES
    if unknown:
        raise SchemaError(f"unknown directive(s) -- migration: {', '.join(sorted(unknown))}")
    return found


def _table(stmt: ast.CreateStmt, directives: set[str] = frozenset()) -> TableSpec:
    constraints: list = []
    columns = []
    for elt in stmt.tableElts:
        if isinstance(elt, ast.ColumnDef):
            columns.append(_column(elt, constraints))
        elif elt.contype == ConstrType.CONSTR_PRIMARY:
            constraints.append(("pk", _names(elt.keys)))
        elif elt.contype == ConstrType.CONSTR_UNIQUE:
            constraints.append(("unique", _names(elt.keys)))
        elif elt.contype == ConstrType.CONSTR_FOREIGN:
            constraints.append(
                ("fk", ForeignKey(_names(elt.fk_attrs), elt.pktable.relname, _names(elt.pk_attrs)))
            )
        elif elt.contype == ConstrType.CONSTR_CHECK:
            constraints.append(("check", _check(elt)))
        else:
            raise SchemaError(f"table {stmt.relation.relname}: unsupported constraint {elt.contype!r}")
    pk = [c for k, c in constraints if k == "pk"]
    if len(pk) != 1:
        raise SchemaError(f"table {stmt.relation.relname} needs exactly one primary key")
    columns = [
        Column(**{**c.__dict__, "not_null": True}) if c.name in pk[0] and not c.not_null else c
        for c in columns
    ]
    return TableSpec(
        name=stmt.relation.relname,
        columns=tuple(columns),
        primary_key=pk[0],
        unique=tuple(c for k, c in constraints if k == "unique"),
        checks=tuple(c for k, c in constraints if k == "check"),
        foreign_keys=tuple(c for k, c in constraints if k == "fk"),
        optional_in_source=OPTIONAL_IN_SOURCE in directives,
    )


def parse_schema(texts: list[str]) -> Catalog:
    """Build the catalog from the text of schema files; tables only come from CREATE TABLE
    statements in the public schema (schema-qualified tables such as migration_audit.* are not
    migrated tables)."""
    tables: dict[str, TableSpec] = {}
    indexes: dict[str, list[str]] = {}
    public: list[str] = []
    for text in texts:
        encoded = text.encode()
        previous_end = 0
        for raw in parse_sql(text):
            stmt = raw.stmt
            directives = _directives(encoded, previous_end, raw.stmt_location)
            end = previous_end = raw.stmt_location + raw.stmt_len if raw.stmt_len else len(encoded)
            is_table = isinstance(stmt, ast.CreateStmt) and not stmt.relation.schemaname
            if directives and not is_table:
                raise SchemaError(
                    f"-- migration: {', '.join(sorted(directives))} must precede a CREATE TABLE"
                )
            if isinstance(stmt, (ast.CreateStmt, ast.IndexStmt)) and not stmt.relation.schemaname:
                public.append(encoded[raw.stmt_location : end].decode().strip())
            if is_table:
                spec = _table(stmt, directives)
                tables[spec.name] = spec
            elif isinstance(stmt, ast.IndexStmt) and not stmt.relation.schemaname:
                indexes.setdefault(stmt.relation.relname, []).append(stmt.idxname)
    for spec in tables.values():
        for fk in spec.foreign_keys:
            if fk.parent not in tables:
                raise SchemaError(f"table {spec.name} references unknown table {fk.parent}")
    sorter = TopologicalSorter({name: spec.parents for name, spec in tables.items()})
    try:
        order = list(sorter.static_order())
    except CycleError as err:
        raise SchemaError(f"foreign keys form a cycle: {err.args[1]}") from err
    # static_order is deterministic but not stable; keep file order among tables of equal depth.
    depth: dict[str, int] = {}
    for name in order:
        depth[name] = 1 + max((depth[p] for p in tables[name].parents), default=-1)
    file_order = list(tables)
    ordered = sorted(tables, key=lambda n: (depth[n], file_order.index(n)))
    specs = tuple(TableSpec(**{**tables[n].__dict__, "indexes": tuple(indexes.get(n, ()))}) for n in ordered)
    return Catalog(tables=specs, ddl=tuple(texts), public_ddl=tuple(public))


@cache
def load_catalog(schema_dir: Path = SCHEMA_DIR) -> Catalog:
    """The catalog of the ``*.sql`` files in ``schema_dir``, applied in file-name order."""
    files = sorted(schema_dir.glob("*.sql"))
    if not files:
        raise SchemaError(f"no .sql files in {schema_dir}")
    return parse_schema([f.read_text() for f in files])
