"""The load, against the real embedded PostgreSQL and real SQLite files."""

from __future__ import annotations

import base64
import sqlite3

import psycopg
import pytest

from migration_pipeline.move.load import LoadError, load_table
from migration_pipeline.move.source import Snapshot, take_snapshot
from migration_pipeline.samples.sample_data import generate

from .helpers import converted, editable_copy, fingerprint, migrate, source_rows, sqlite_exec, target_rows

EXPECTED_KINDS = {
    "users": {
        "username: duplicate key", "username: NULL in NOT NULL column", "username: text too long",
        "username: NUL in text", "username: invalid UTF-8", "profile_picture_url: wrong storage type",
        "profile_data: invalid JSON",
    },
    "tweets": {
        "created_at: invalid timestamp", "metadata: invalid JSON", "is_reply: invalid boolean",
        "user_id: orphan", "user_id: parent quarantined",
    },
    "funnel_progress": {"current_command_index: invalid integer"},
    "referral_usage_log": {"referral_code: orphan"},
    "analysis_queue": {"status: CHECK violation"},
    "analysis_chunks": {"job_id: orphan", "job_id: parent quarantined"},
}  # fmt: skip


@pytest.fixture
def migrated(conn, catalog, sample_db, tmp_path):
    return migrate(conn, catalog, sample_db, "run-1", tmp_path)


def assert_every_row_loaded_exactly_or_quarantined(conn, catalog, snapshot, results, run_id):
    for spec in catalog.tables:
        result = results[spec.name]
        if not result.source_present:  # a table the source may lack: created empty
            assert result.source_rows == result.loaded_rows == result.rejected_rows == 0, spec.name
            continue
        rows, columns = source_rows(snapshot, spec.name)
        assert result.source_rows == len(rows) == result.loaded_rows + result.rejected_rows, spec.name
        loaded = target_rows(conn, spec, columns)
        assert len(loaded) == result.loaded_rows
        quarantined = dict(
            conn.execute(
                "SELECT source_key, count(*) FROM migration_audit.rejected_rows WHERE run_id = %s "
                "AND table_name = %s GROUP BY 1",
                (run_id, spec.name),
            ).fetchall()
        )
        assert sum(quarantined.values()) == result.rejected_rows
        pk_idx = [columns.index(c) for c in spec.primary_key]
        loaded_keys = set(loaded)
        for row in rows:
            key = tuple(row[1 + i] for i in pk_idx)
            expected = converted(spec, columns, row[1:])
            if key in loaded_keys and expected is not None and loaded[key] == expected:
                loaded_keys.discard(key)  # this source row is the one loaded, value for value
        assert not loaded_keys, f"{spec.name}: loaded rows that equal no source row: {list(loaded_keys)[:3]}"
        load = conn.execute(
            "SELECT source_rows, loaded_rows, rejected_rows FROM migration_audit.table_loads "
            "WHERE run_id = %s AND table_name = %s",
            (run_id, spec.name),
        ).fetchone()
        assert load == (result.source_rows, result.loaded_rows, result.rejected_rows)


def test_every_source_row_loaded_exactly_or_quarantined(conn, catalog, migrated, tmp_path):
    assert_every_row_loaded_exactly_or_quarantined(
        conn, catalog, tmp_path / "run-1.snapshot.db", migrated, "run-1"
    )


def test_a_database_full_of_bad_rows_loses_nothing(conn, catalog, tmp_path):
    source = generate(
        tmp_path / "awful.db", users=200, tweets=2_000, bad_fraction=0.5, with_queue=True, seed=3
    )
    results = migrate(conn, catalog, source, "run-awful", tmp_path)
    assert results["tweets"].rejected_rows > results["tweets"].source_rows / 2
    assert_every_row_loaded_exactly_or_quarantined(
        conn, catalog, tmp_path / "run-awful.snapshot.db", results, "run-awful"
    )


def test_every_quarantine_reason_is_recorded(migrated):
    for table, kinds in EXPECTED_KINDS.items():
        assert kinds <= set(migrated[table].rejected_by_reason), (table, migrated[table].rejected_by_reason)


def test_reasons_are_readable_and_raw_rows_keep_original_values(conn, migrated):
    rows = conn.execute(
        "SELECT source_key, column_name, reason, raw_row FROM migration_audit.rejected_rows "
        "WHERE table_name = 'users' AND run_id = 'run-1'"
    ).fetchall()
    by_key = {r[0]: r for r in rows}
    assert "not valid UTF-8" in by_key["u5"][2]
    raw = by_key["u5"][3]["username"]
    assert raw["$storage"] == "text (invalid UTF-8)" and base64.b64decode(raw["$base64"]) == b"\xff\xfeuser"
    nul = by_key["u4"][3]["username"]
    assert base64.b64decode(nul["$base64"]).decode() == "user_4\x00nul"
    blob = by_key["u6"][3]["profile_picture_url"]
    assert blob["$storage"] == "blob" and base64.b64decode(blob["$base64"]) == b"\x89PNG"
    assert "exceeds the column's limit of 255" in by_key["u3"][2]
    orphan = conn.execute(
        "SELECT reason FROM migration_audit.rejected_rows WHERE table_name = 'referral_usage_log' "
        "AND raw_row->>'referral_code' = 'NO' LIMIT 1"
    ).fetchone()[0]
    assert orphan == "referral_code='NO': no parent row in referral_codes(code) (orphan)"


def test_sequences_end_past_the_highest_id(conn, catalog, migrated):
    """Past the quarantined rows' ids too: the app's next referral use must not take the id of a declined
    one ('NO') that a rollback or a fixed re-load brings back."""
    for spec in catalog.tables:
        for column in spec.serial_columns:
            top = conn.execute(
                f"SELECT greatest(max({column}), (SELECT max((raw_row->>'{column}')::bigint)"
                " FROM migration_audit.rejected_rows WHERE table_name = %s), 0) FROM " + spec.name,
                (spec.name,),
            ).fetchone()[0]
            nxt = conn.execute(
                "SELECT nextval(pg_get_serial_sequence(%s, %s))", (spec.name, column)
            ).fetchone()[0]
            assert nxt > top, spec.name


def test_rerun_gives_the_same_target(conn, catalog, sample_db, migrated, tmp_path):
    before = {t: fingerprint(conn, t) for t in catalog.names}
    again = migrate(conn, catalog, sample_db, "run-2", tmp_path)
    assert {t: fingerprint(conn, t) for t in catalog.names} == before
    for name in catalog.names:
        assert again[name].loaded_rows == migrated[name].loaded_rows
        assert again[name].rejected_rows == migrated[name].rejected_rows
    runs = conn.execute("SELECT count(DISTINCT run_id) FROM migration_audit.table_loads").fetchone()[0]
    assert runs == 2


def test_a_failing_load_leaves_the_previous_content(conn, catalog, sample_db, migrated, tmp_path):
    before = fingerprint(conn, "tweets"), fingerprint(conn, "users")

    def crash(rows):
        raise RuntimeError("killed mid-load")

    with Snapshot(tmp_path / "run-1.snapshot.db") as snap:
        with pytest.raises(RuntimeError):
            load_table(conn, snap, catalog, "tweets", "run-crash", progress=crash)
        with pytest.raises(RuntimeError):
            load_table(conn, snap, catalog, "users", "run-crash", progress=crash)
    assert (fingerprint(conn, "tweets"), fingerprint(conn, "users")) == before
    assert not conn.execute("SELECT 1 FROM migration_audit.table_loads WHERE run_id = 'run-crash'").fetchall()


def test_postgres_gone_mid_load_leaves_the_previous_content(server, settings, catalog, sample_db, tmp_path):
    from migration_pipeline.connect.target import connect

    with connect(settings) as conn:
        migrate(conn, catalog, sample_db, "run-1", tmp_path)
        before = fingerprint(conn, "tweets")
    victim = connect(settings)
    pid = victim.info.backend_pid

    def server_drops_us(rows):
        with psycopg.connect(**{**server, "dbname": settings.database}, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))

    with Snapshot(tmp_path / "run-1.snapshot.db") as snap, pytest.raises(psycopg.OperationalError):
        load_table(victim, snap, catalog, "tweets", "run-dropped", progress=server_drops_us)
    victim.close()
    with connect(settings) as conn:
        assert fingerprint(conn, "tweets") == before


def test_source_without_queue_tables(conn, catalog, tmp_path):
    source = generate(tmp_path / "noqueue.db", users=50, tweets=200, with_queue=False)
    results = migrate(conn, catalog, source, "run-nq", tmp_path)
    for table in ("analysis_queue", "analysis_chunks"):
        assert not results[table].source_present
        assert results[table].source_rows == results[table].loaded_rows == 0
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0
        load = conn.execute(
            "SELECT source_rows, loaded_rows, rejected_rows FROM migration_audit.table_loads WHERE table_name = %s",
            (table,),
        ).fetchone()
        assert load == (0, 0, 0)
    assert results["tweets"].loaded_rows > 0


@pytest.mark.parametrize("journal_mode", ["wal", "delete"])
def test_source_file_untouched_while_the_app_writes(conn, catalog, tmp_path, journal_mode):
    source = generate(tmp_path / "live.db", users=50, tweets=300, journal_mode=journal_mode)
    writer = sqlite3.connect(source, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO users (id, username) VALUES ('uncommitted', 'not yet')")
    before = source.read_bytes()
    results = migrate(conn, catalog, source, "run-live", tmp_path)
    assert source.read_bytes() == before
    assert results["users"].source_rows == 50  # the uncommitted row is not in the snapshot
    writer.execute("COMMIT")  # the app is not disturbed
    writer.close()


def test_parent_reload_merges_and_removes_dependants_of_deleted_rows(
    conn, catalog, sample_db, migrated, tmp_path
):
    source = editable_copy(sample_db, tmp_path / "changed.db")
    tweets_of_u10 = conn.execute("SELECT count(*) FROM tweets WHERE user_id = 'u10'").fetchone()[0]
    assert tweets_of_u10 > 0
    sqlite_exec(
        source,
        "DELETE FROM users WHERE id = 'u10'",
        "UPDATE users SET username = 'renamed_11' WHERE id = 'u11'",
        "INSERT INTO users (id, username, created_at) VALUES ('u_new', 'newcomer', '2024-03-05 17:21:09')",
    )
    info = take_snapshot(source, tmp_path / "changed.snapshot.db")
    with Snapshot(info.path) as snap:
        users = load_table(conn, snap, catalog, "users", "run-3")
        assert users.cascaded_deletes.get("tweets") == tweets_of_u10
        assert conn.execute("SELECT username FROM users WHERE id = 'u11'").fetchone()[0] == "renamed_11"
        assert conn.execute("SELECT count(*) FROM users WHERE id IN ('u10', 'u_new')").fetchone()[0] == 1
        tweets = load_table(conn, snap, catalog, "tweets", "run-3")
    assert tweets.source_rows == tweets.loaded_rows + tweets.rejected_rows
    assert tweets.rejected_by_reason["user_id: orphan"] >= tweets_of_u10


def test_unmappable_source_is_a_clear_error_and_changes_nothing(conn, catalog, sample_db, migrated, tmp_path):
    before = fingerprint(conn, "users")
    source = editable_copy(sample_db, tmp_path / "extra.db")
    sqlite_exec(source, "ALTER TABLE users ADD COLUMN nickname TEXT")
    info = take_snapshot(source, tmp_path / "extra.snapshot.db")
    with Snapshot(info.path) as snap, pytest.raises(LoadError, match="nickname"):
        load_table(conn, snap, catalog, "users", "run-x")
    assert fingerprint(conn, "users") == before


def test_bulk_path_rebuilds_indexes_and_foreign_keys_exactly(conn, catalog, sample_db, tmp_path, monkeypatch):
    from migration_pipeline.move import publish

    def structure():
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        constraints = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint"
            " WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall()
        return indexes, constraints

    migrate(conn, catalog, sample_db, "run-small", tmp_path)
    before = structure(), fingerprint(conn, "tweets")
    monkeypatch.setattr(publish, "BULK_ROWS", 10)
    results = migrate(conn, catalog, sample_db, "run-bulk", tmp_path)
    assert results["tweets"].loaded_rows > 10
    assert (structure(), fingerprint(conn, "tweets")) == before
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        conn.execute("INSERT INTO tweets (id, user_id, text, created_at) VALUES ('x', 'nobody', 't', now())")


JSON_EDGES = [
    '{"big": 123456789012345678901234567890, "tiny": 1e-320, "neg_zero": -0.0, "exp": 1E2}',
    '{"sum": 0.30000000000000004, "precise": 3.141592653589793238462643383279}',
    '{"escapes": "\\u00e9\\ud83d\\ude80 \\"q\\" \\\\ \\/ \\n\\t", "raw": "ünïcödé 東京 🚀"}',
    '[[[[[[[[[[[[[[[[[[[[{"deep": true}]]]]]]]]]]]]]]]]]]]]',
    '  {"spaced"  :  [ 1 , 2 ] }  ',
    '"a bare string"',
    "null",
    "[]",
]


def test_json_lands_exactly_as_parsed(conn, catalog, tmp_path):
    source = generate(tmp_path / "json.db", users=5, tweets=0, bad_fraction=0)
    sqlite_exec(
        source,
        *(
            f"INSERT INTO tweets (id, user_id, text, created_at, metadata) VALUES "
            f"('j{i}', 'u0', 'x', '2024-03-05 17:21:09', '{doc.replace(chr(39), chr(39) * 2)}')"
            for i, doc in enumerate(JSON_EDGES)
        ),
        "INSERT INTO tweets (id, user_id, text, created_at, metadata) VALUES ('jnull', 'u0', 'x', 0, NULL)",
    )
    results = migrate(conn, catalog, source, "run-json", tmp_path)
    assert results["tweets"].rejected_rows == 0
    for i, doc in enumerate(JSON_EDGES):
        same, kind = conn.execute(
            "SELECT metadata = %s::jsonb, jsonb_typeof(metadata) FROM tweets WHERE id = %s", (doc, f"j{i}")
        ).fetchone()
        assert same, doc
        assert kind == {"{": "object", "[": "array", '"': "string", "n": "null"}[doc.strip()[0]]
    big = conn.execute(
        "SELECT metadata->>'big', metadata->>'precise' FROM tweets WHERE id = 'j0' OR id = 'j1'"
    )
    assert ("123456789012345678901234567890", None) in big.fetchall()
    precise = conn.execute("SELECT metadata->>'precise' FROM tweets WHERE id = 'j1'").fetchone()[0]
    assert precise == "3.141592653589793238462643383279"  # numeric, not rounded through a float
    assert conn.execute("SELECT metadata IS NULL FROM tweets WHERE id = 'jnull'").fetchone()[0]


def test_source_missing_columns(conn, catalog, sample_db, tmp_path):
    source = editable_copy(sample_db, tmp_path / "narrow.db")
    sqlite_exec(
        source, "ALTER TABLE tweets DROP COLUMN url", "ALTER TABLE analysis_chunks DROP COLUMN chunk_index"
    )
    info = take_snapshot(source, tmp_path / "narrow.snapshot.db")
    with Snapshot(info.path) as snap:
        load_table(conn, snap, catalog, "users", "run-n")
        tweets = load_table(conn, snap, catalog, "tweets", "run-n")
        assert tweets.defaulted_columns == ("url",)
        assert tweets.loaded_rows > 0
        assert conn.execute("SELECT count(*) FROM tweets WHERE url IS NOT NULL").fetchone()[0] == 0
        with pytest.raises(LoadError, match="chunk_index"):
            load_table(conn, snap, catalog, "analysis_chunks", "run-n")


def test_applying_the_schema_again_waits_for_no_load(conn, catalog, migrated, settings):
    """A load of one table holds it locked while another table's load starts and applies schema/: that
    must not wait for the lock (it deadlocked once the first load wanted the audit tables back)."""
    from migration_pipeline.connect.target import apply_schema, connect

    with connect(settings) as loading, loading.transaction():
        loading.execute("LOCK TABLE tweets IN EXCLUSIVE MODE")
        loading.execute(
            "INSERT INTO migration_audit.row_changes (table_name, op, row_hash) VALUES ('x', 'I', 0)"
        )
        conn.execute("SET lock_timeout = '2s'")
        apply_schema(conn, catalog)  # returns at once: nothing to do, nothing locked
        conn.execute("RESET lock_timeout")
    conn.execute("DROP INDEX idx_tweets_text")
    apply_schema(conn, catalog)  # a missing index is still recreated
    assert conn.execute("SELECT to_regclass('idx_tweets_text')").fetchone()[0] is not None


def test_no_single_value_fails_a_table(conn, catalog, tmp_path):
    """A metadata array nested 2,000 deep and a tweet whose key is a BLOB holding NUL are quarantined,
    with a reason, while the rest of the table loads; a value as deep as the rule admits loads exactly and
    passes the checks, which re-read it in Python."""
    from migration_pipeline.move.convert import MAX_JSON_DEPTH
    from migration_pipeline.prove import behaviour, proof

    source = generate(tmp_path / "odd.db", users=20, tweets=200, bad_fraction=0)
    before = migrate(conn, catalog, source, "run-plain", tmp_path)["tweets"]
    db = sqlite3.connect(source)
    with db:
        insert = "INSERT INTO tweets (id, user_id, text, created_at, metadata) VALUES (?, 'u0', 'x', 0, ?)"
        db.execute(insert, ("deep", "[" * 2_000 + "]" * 2_000))
        db.execute(insert, (b"key\x00with NUL", "{}"))
        db.execute(insert, ("deepest allowed", "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH))
        blob_rowid = db.execute("SELECT rowid FROM tweets WHERE typeof(id) = 'blob'").fetchone()[0]
    db.close()
    results = migrate(conn, catalog, source, "run-odd", tmp_path)
    assert results["tweets"].loaded_rows == before.loaded_rows + 1
    assert results["tweets"].rejected_rows == before.rejected_rows + 2
    rejected = dict(
        conn.execute(
            "SELECT source_key, reason FROM migration_audit.rejected_rows WHERE run_id = 'run-odd'"
            " AND table_name = 'tweets'"
        ).fetchall()
    )
    assert rejected["deep"].startswith(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    assert "unexpected bytes value" in rejected[f"rowid:{blob_rowid}"]
    raw = conn.execute(
        "SELECT raw_row->'id'->>'$base64' FROM migration_audit.rejected_rows WHERE source_key = %s",
        (f"rowid:{blob_rowid}",),
    ).fetchone()[0]
    assert base64.b64decode(raw) == b"key\x00with NUL"  # nothing lost: the original bytes
    snapshot = tmp_path / "run-odd.snapshot.db"
    for outcome in proof.run(conn, catalog, "tweets", snapshot):
        assert outcome.passed or outcome.name == "quarantine", (outcome.name, outcome.problems)
    assert all(o.passed for _, o in behaviour.run(conn, catalog, snapshot))


def test_json_numbers_beyond_float_precision_pass_every_check(conn, catalog, tmp_path):
    """jsonb keeps a JSON number's decimal digits exactly (1.7976931348623157e+308 is printed back as 309
    digits): the checks compare numbers as decimals, so exact values never read as different."""
    from migration_pipeline.prove import behaviour, proof

    source = generate(tmp_path / "numbers.db", users=20, tweets=50, bad_fraction=0)
    doc = '{"max": 1.7976931348623157e+308, "tiny": 1.0185336904134522e-274, "dec": 0.1, "e": 1E+30}'
    sqlite_exec(source, f"UPDATE users SET profile_data = '{doc}'", f"UPDATE tweets SET metadata = '{doc}'")
    migrate(conn, catalog, source, "run-num", tmp_path)
    snapshot = tmp_path / "run-num.snapshot.db"
    for table in ("users", "tweets"):
        for outcome in proof.run(conn, catalog, table, snapshot):
            assert outcome.passed or outcome.name == "quarantine", (table, outcome.name, outcome.problems)
    assert [o.problems for _, o in behaviour.run(conn, catalog, snapshot) if not o.passed] == []


def test_a_clean_sample_loads_every_row(conn, catalog, tmp_path):
    """``generate(clean=True)``, the benchmark's clean source: the app's loose formats, no broken row."""
    source = generate(tmp_path / "clean.db", users=50, tweets=500, with_queue=True, clean=True)
    results = migrate(conn, catalog, source, "run-clean", tmp_path)
    assert {name: r.rejected_rows for name, r in results.items() if r.rejected_rows} == {}
    assert all(r.loaded_rows == r.source_rows > 0 for r in results.values())
