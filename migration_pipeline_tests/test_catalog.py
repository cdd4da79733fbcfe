"""The catalog is derived from schema/ and matches the seed's schema."""

from __future__ import annotations

import pytest

from migration_pipeline.catalog import SchemaError, parse_schema


def test_ten_tables_in_foreign_key_order(catalog):
    names = catalog.names
    assert sorted(names) == sorted(
        ["users", "tweets", "personality_analysis", "funnel_progress", "funnel_completion", "referral_tracking",
         "referral_codes", "referral_usage_log", "analysis_queue", "analysis_chunks"]
    )  # fmt: skip
    assert names[0] == "users"
    for spec in catalog.tables:
        for parent in spec.parents:
            assert names.index(parent) < names.index(spec.name), (parent, spec.name)
    assert names.index("referral_codes") < names.index("referral_usage_log")
    assert names.index("analysis_queue") < names.index("analysis_chunks")


def test_columns_types_and_constraints(catalog):
    users = catalog.table("users")
    assert users.primary_key == ("id",)
    assert users.unique == (("username",),)
    assert users.column("username").max_length == 255 and users.column("username").not_null
    assert users.column("profile_data").kind == "jsonb"
    assert users.column("created_at").kind == "timestamptz" and users.column("created_at").has_default
    assert catalog.table("tweets").column("is_reply").kind == "boolean"
    assert catalog.table("referral_tracking").serial_columns == ("id",)
    assert catalog.table("referral_tracking").unique == (("referred_user_id",),)
    queue = catalog.table("analysis_queue")
    assert queue.checks[0].name == "valid_status" and queue.checks[0].columns == ("status",)
    assert "idx_tweets_text" in catalog.table("tweets").indexes
    usage = catalog.table("referral_usage_log")
    assert {(fk.columns, fk.parent) for fk in usage.foreign_keys} == {
        (("referral_code",), "referral_codes"),
        (("used_by_user_id",), "users"),
    }
    assert {t.name for t, _ in catalog.children("users")} >= {
        "tweets",
        "referral_usage_log",
        "analysis_queue",
    }


def test_only_the_tables_the_app_never_creates_may_be_absent_from_the_source(catalog):
    optional = {t.name for t in catalog.tables if t.optional_in_source}
    assert optional == {"analysis_queue", "analysis_chunks"}


def test_optional_in_source_directive_is_read_from_the_comment_above_a_table():
    catalog = parse_schema([
        "-- migration: optional_in_source (never created by the app)\n"
        "CREATE TABLE a (id TEXT PRIMARY KEY);\n"
        "-- an ordinary comment\nCREATE TABLE b (id TEXT PRIMARY KEY); -- about b\n"
        "/* prose */ CREATE TABLE c (id TEXT PRIMARY KEY);"
    ])  # fmt: skip
    assert [(t.name, t.optional_in_source) for t in catalog.tables] == [
        ("a", True),
        ("b", False),
        ("c", False),
    ]
    with pytest.raises(SchemaError, match="unknown directive.*optional_in_sorce"):
        parse_schema(["-- migration: optional_in_sorce\nCREATE TABLE a (id TEXT PRIMARY KEY);"])
    with pytest.raises(SchemaError, match="must precede a CREATE TABLE"):
        parse_schema([
            "CREATE TABLE a (id TEXT PRIMARY KEY);\n"
            "-- migration: optional_in_source\nCREATE INDEX i ON a (id);"
        ])  # fmt: skip


def test_schema_errors_are_clear():
    with pytest.raises(SchemaError, match="unknown table"):
        parse_schema(["CREATE TABLE a (id TEXT PRIMARY KEY, b TEXT REFERENCES nowhere(id));"])
    with pytest.raises(SchemaError, match="cycle"):
        parse_schema([
            "CREATE TABLE a (id TEXT PRIMARY KEY, b TEXT REFERENCES b(id));"
            "CREATE TABLE b (id TEXT PRIMARY KEY, a TEXT REFERENCES a(id));"
        ])  # fmt: skip
    with pytest.raises(SchemaError, match="no converter"):
        parse_schema(["CREATE TABLE a (id TEXT PRIMARY KEY, x POINT);"])


def test_applied_schema_matches_files(conn, catalog):
    from migration_pipeline.connect.target import apply_schema

    apply_schema(conn, catalog)
    apply_schema(conn, catalog)  # idempotent
    tables = {r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables == set(catalog.names)
    indexes = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
    assert {i for t in catalog.tables for i in t.indexes} <= indexes
    gin = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'idx_tweets_text'").fetchone()[0]
    assert "gin" in gin and "to_tsvector('english'::regconfig, text)" in gin
    audit = {
        r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'migration_audit'")
    }
    assert audit == {
        "rejected_rows",
        "quarantine_seen",
        "quarantine_corrections",
        "app_performance",
        "table_loads",
        "row_changes",
        "monitor_samples",
        "monitor_alerts",
        "schema_applied",
        "cutovers",
        "phases",
        "proof_baselines",
    }
