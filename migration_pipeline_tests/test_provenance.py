"""Provenance: every load records where its rows came from, when, with which code, and what it rejected."""

from __future__ import annotations

from migration_pipeline.connect.target import apply_schema
from migration_pipeline.move.source import file_sha256
from migration_pipeline.prove import provenance

from .helpers import migrate, sqlite_exec


def test_each_load_records_source_code_and_rejections(conn, catalog, sample_db, tmp_path):
    migrate(conn, catalog, sample_db, "run-1", tmp_path)
    snapshot = tmp_path / "run-1.snapshot.db"
    [load] = provenance.table_history(conn, "tweets")
    assert load["run_id"] == "run-1" and load["mode"] == "full"
    assert load["source_path"] == str(sample_db.resolve())
    assert load["snapshot_sha256"] == file_sha256(snapshot)
    assert load["snapshot_taken_at"] <= load["started_at"] <= load["finished_at"]
    assert load["code_version"] == provenance.code_version()
    # the counts by kind are the quarantined rows themselves, and add up to the load's number
    assert load["rejected_rows"] > 0
    assert sum(load["rejected_by_kind"].values()) == load["rejected_rows"]
    assert any(kind.startswith("metadata: ") for kind in load["rejected_by_kind"]), load["rejected_by_kind"]
    listed = conn.execute(provenance.quarantine_sql("run-1", "tweets")).fetchall()
    assert len(listed) == load["rejected_rows"]
    assert conn.execute(provenance.load_sql("run-1", "tweets")).fetchone() is not None


def test_history_is_kept_per_run_and_the_report_answers_for_every_table(conn, catalog, sample_db, tmp_path):
    source = tmp_path / "app.db"
    source.write_bytes(sample_db.read_bytes())
    migrate(conn, catalog, source, "run-1", tmp_path)
    sqlite_exec(source, "DELETE FROM tweets WHERE rowid IN (SELECT rowid FROM tweets LIMIT 7)")
    migrate(conn, catalog, source, "run-2", tmp_path)
    newest, oldest = provenance.table_history(conn, "tweets")
    assert (newest["run_id"], oldest["run_id"]) == ("run-2", "run-1")
    assert oldest["source_rows"] - newest["source_rows"] == 7
    assert newest["snapshot_sha256"] != oldest["snapshot_sha256"]
    conn.execute("INSERT INTO users (id, username) VALUES ('u-after', 'written_by_the_app_after')")

    text = provenance.render(conn, catalog)
    for table in catalog.names:
        assert f"## {table}" in text
    assert "run `run-2` (full load)" in text and "| `run-1` | full |" in text
    assert f"version `{provenance.code_version()}` (the current code)" in text
    assert "the app added 1 and removed 0 rows" in text
    assert (
        "| rejected because | rows |" in text and "WHERE run_id = 'run-2' AND table_name = 'tweets'" in text
    )


def test_cli_writes_the_report_and_names_a_table_never_loaded(conn, catalog, settings, monkeypatch, tmp_path):
    apply_schema(conn, catalog)
    monkeypatch.setenv("PG_DATABASE", settings.database)
    monkeypatch.delenv("PG_DSN", raising=False)
    out = tmp_path / "provenance.md"
    assert provenance.main(["--table", "users", "--out", str(out)]) == 0
    assert (
        out.read_text()
        == "# Provenance of the migrated tables\n\n## users\n\nNever loaded by this pipeline.\n"
    )


def test_audit_tables_of_an_earlier_version_gain_the_provenance_columns(conn, catalog):
    conn.execute("CREATE SCHEMA migration_audit")
    conn.execute(
        "CREATE TABLE migration_audit.table_loads (run_id TEXT NOT NULL, table_name TEXT NOT NULL,"
        " source_rows BIGINT NOT NULL, loaded_rows BIGINT NOT NULL, rejected_rows BIGINT NOT NULL,"
        " checksum TEXT, started_at TIMESTAMPTZ NOT NULL, finished_at TIMESTAMPTZ NOT NULL,"
        " PRIMARY KEY (run_id, table_name))"
    )
    conn.execute(
        "CREATE TABLE migration_audit.rejected_rows (run_id TEXT NOT NULL, table_name TEXT NOT NULL,"
        " source_key TEXT, column_name TEXT, reason TEXT NOT NULL, raw_row JSONB NOT NULL,"
        " rejected_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    apply_schema(conn, catalog)
    columns = {
        (t, c)
        for t, c in conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'migration_audit'"
        )
    }
    assert {
        ("table_loads", "code_version"),
        ("table_loads", "mode"),
        ("rejected_rows", "kind"),
        ("rejected_rows", "source_rowid"),
    } <= columns


def test_the_code_version_covers_every_module_of_the_load_path(tmp_path):
    """Derived from the files: a module added to move/ (e.g. by a split) changes the version, one added to
    a stage that does not decide a table's content (prove/) does not, nor does the app's SQLite DDL."""
    import shutil

    from migration_pipeline.catalog import SCHEMA_DIR
    from migration_pipeline.move import code_version

    package, schema = tmp_path / "migration_pipeline", tmp_path / "schema"
    shutil.copytree(code_version.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(SCHEMA_DIR, schema)
    before = code_version.digest(package, schema)
    assert before == code_version.code_version()
    assert package / "move" / "stage.py" in code_version.versioned_files(package, schema)
    (package / "prove" / "another_check.py").write_text("X = 1\n")
    (schema / "sqlite" / "app.sql").write_text("-- another app\n")
    assert code_version.digest(package, schema) == before
    (package / "move" / "split_off.py").write_text("X = 1\n")
    assert code_version.digest(package, schema) != before
    (package / "move" / "split_off.py").unlink()
    time_c = package / "move" / "csrc" / "time.c"
    time_c.write_text(time_c.read_text() + "\n/* changed */\n")  # the compiled value rules count too
    assert code_version.digest(package, schema) != before
    time_c.write_text((code_version.PACKAGE / "move" / "csrc" / "time.c").read_text())
    assert code_version.digest(package, schema) == before
    (schema / "010_twitter.sql").write_text((schema / "010_twitter.sql").read_text() + "\n-- changed\n")
    assert code_version.digest(package, schema) != before
