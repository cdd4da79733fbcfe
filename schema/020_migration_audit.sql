-- The migration's audit trail (shared/docs/contract.md, "Target"). Kept in its own schema so the
-- app's tables stay exactly the seed's. Idempotent.

CREATE SCHEMA IF NOT EXISTS migration_audit;

-- One row per source row that could not be loaded. source_key is the row's primary key as text
-- (the SQLite rowid where the table has no usable key); raw_row keeps every original value
-- (bytes as base64) so nothing is lost.
CREATE TABLE IF NOT EXISTS migration_audit.rejected_rows (
    run_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    source_key TEXT,
    source_rowid BIGINT, -- the row's rowid in the snapshot it was read from
    column_name TEXT,
    reason TEXT NOT NULL,
    kind TEXT, -- the reason's short category ("tweet_data: invalid JSON", "user_id: orphan"), for counts
    raw_row JSONB NOT NULL,
    rejected_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS idx_rejected_rows_run_table
    ON migration_audit.rejected_rows (run_id, table_name);
CREATE INDEX IF NOT EXISTS idx_rejected_rows_table_key
    ON migration_audit.rejected_rows (table_name, source_key);

-- One row per table per run; source_rows = loaded_rows + rejected_rows always.
CREATE TABLE IF NOT EXISTS migration_audit.table_loads (
    run_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    source_rows BIGINT NOT NULL,
    loaded_rows BIGINT NOT NULL,
    rejected_rows BIGINT NOT NULL,
    checksum TEXT,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL,
    finished_at TIMESTAMP WITH TIME ZONE NOT NULL,
    -- Provenance: how the rows were applied ('full': the table replaced; 'delta': only changed rows),
    -- where they came from (the app's file, the sha256 of the snapshot they were read from and when it
    -- was taken) and which code converted them (the code version the Dagster assets show).
    mode TEXT NOT NULL DEFAULT 'full',
    source_path TEXT,
    snapshot_sha256 TEXT,
    snapshot_taken_at TIMESTAMP WITH TIME ZONE,
    code_version TEXT,
    PRIMARY KEY (run_id, table_name),
    CONSTRAINT table_loads_conservation CHECK (source_rows = loaded_rows + rejected_rows)
);

-- Audit tables created by an earlier version of this file gain the provenance columns (checked first, so
-- the usual case takes no lock).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'migration_audit'
                   AND table_name = 'rejected_rows' AND column_name = 'source_rowid') THEN
        ALTER TABLE migration_audit.table_loads
            ADD COLUMN IF NOT EXISTS mode TEXT NOT NULL DEFAULT 'full',
            ADD COLUMN IF NOT EXISTS source_path TEXT,
            ADD COLUMN IF NOT EXISTS snapshot_sha256 TEXT,
            ADD COLUMN IF NOT EXISTS snapshot_taken_at TIMESTAMP WITH TIME ZONE,
            ADD COLUMN IF NOT EXISTS code_version TEXT;
        ALTER TABLE migration_audit.rejected_rows
            ADD COLUMN IF NOT EXISTS kind TEXT,
            ADD COLUMN IF NOT EXISTS source_rowid BIGINT;
    END IF;
END
$$;

-- ---- shrink guard (migration_pipeline/guard.py) -------------------------------------------------
-- What each table load removed, and the operator's confirmation when that was more than the guard
-- allows (MAX_SHRINK_SHARE of the table, or all of it): removed_rows counts the table's rows before a
-- full load whose key it removed (NULL for delta syncs, which apply the app's own deletes and are not
-- shrink-guarded); shrink_confirmed is NULL unless a
-- confirmed shrink (ALLOW_SHRINK or the run config) let the load through, and then says who confirmed
-- it and, per table (cascades included), the rows before and removed. Added to table_loads of any age
-- (checked first, so the usual case takes no lock).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'migration_audit'
                   AND table_name = 'table_loads' AND column_name = 'shrink_confirmed') THEN
        ALTER TABLE migration_audit.table_loads
            ADD COLUMN IF NOT EXISTS removed_rows BIGINT,
            ADD COLUMN IF NOT EXISTS shrink_confirmed JSONB;
    END IF;
END
$$;
-- ---- end of shrink guard ------------------------------------------------------------------------

-- Rows the app changed in a migrated table since its last load (the change log): written by
-- statement-level triggers that each load installs on the table it loaded (see
-- migration_pipeline/changes.py); a load empties its table's entries. 'D' is a row gone (deleted, or
-- the old version of an updated row), 'I' a row added (inserted, or the new version). row_hash uses
-- the same row hash as table_loads.checksum, so checks can follow a live table exactly. Only those
-- triggers write it.
CREATE TABLE IF NOT EXISTS migration_audit.row_changes (
    id BIGSERIAL NOT NULL,  -- the order of a key's entries (compaction); no index: see below
    table_name TEXT NOT NULL,
    op CHAR(1) NOT NULL,
    row_key TEXT,
    row_hash BIGINT NOT NULL,
    changed_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    -- who changed it, so that an unexplained change can be traced: the statement (INSERT, UPDATE,
    -- DELETE, TRUNCATE), the role, the session's application_name, client address and transaction
    statement TEXT,
    changed_by TEXT,
    application_name TEXT,
    client_addr INET,
    txid BIGINT
);
-- No index, no primary key and no CHECK: every app write pays for each one (the primary key's index
-- alone is a fifth of a logged row's cost), and the checks and compaction read a table's entries whole
-- (bench/changelog_bench.py). Logs created by an earlier version lose them.
ALTER TABLE migration_audit.row_changes DROP CONSTRAINT IF EXISTS row_changes_pkey;
ALTER TABLE migration_audit.row_changes DROP CONSTRAINT IF EXISTS row_changes_op_check;
DROP INDEX IF EXISTS migration_audit.idx_row_changes_table_key;

-- Change logs created by an earlier version of this file gain the columns that say who changed a row.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM information_schema.columns WHERE table_schema = 'migration_audit'
                   AND table_name = 'row_changes' AND column_name = 'changed_by') THEN
        ALTER TABLE migration_audit.row_changes
            ADD COLUMN IF NOT EXISTS statement TEXT,
            ADD COLUMN IF NOT EXISTS changed_by TEXT,
            ADD COLUMN IF NOT EXISTS application_name TEXT,
            ADD COLUMN IF NOT EXISTS client_addr INET,
            ADD COLUMN IF NOT EXISTS txid BIGINT;
    END IF;
END
$$;

-- The phase of the migrated database (migration_pipeline/phase.py), one row per declared change, the
-- latest one in force: 'migrated' (the app writes to SQLite: every change in PostgreSQL is unexplained),
-- 'switched' (the app writes to PostgreSQL since declared_at: the change log explains its writes),
-- 'finalized' (the soak period ended: no change log; the checks prove structure, not content).
CREATE TABLE IF NOT EXISTS migration_audit.phases (
    id BIGSERIAL PRIMARY KEY,
    phase TEXT NOT NULL CHECK (phase IN ('migrated', 'switched', 'finalized')),
    declared_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    declared_by TEXT NOT NULL, -- the person (or job) who declared it
    pg_role TEXT NOT NULL DEFAULT current_user,
    run_id TEXT,
    note TEXT
);

-- Proof baselines recorded from PostgreSQL itself (finalize: the content when the soak period ended;
-- resuming the change log: the content it then follows). A baseline newer than a table's last load is
-- what its checks compare with.
CREATE TABLE IF NOT EXISTS migration_audit.proof_baselines (
    run_id TEXT NOT NULL,
    table_name TEXT NOT NULL,
    rows BIGINT NOT NULL,
    checksum TEXT NOT NULL,
    recorded_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    why TEXT NOT NULL,
    PRIMARY KEY (run_id, table_name)
);

-- One row per cutover (migration_pipeline/cutover.py): state says, at every step, where it stands and
-- what an operator should do if it stopped there.
CREATE TABLE IF NOT EXISTS migration_audit.cutovers (
    run_id TEXT PRIMARY KEY,
    source_path TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    rounds INTEGER,
    last_round_rows BIGINT,
    freeze_seconds DOUBLE PRECISION,
    final_rows BIGINT,
    verified BOOLEAN
);

-- Which versions of schema/ were applied (sha256 of the DDL text): loads skip re-running DDL, whose
-- table locks would otherwise collide with other tables' loads in progress.
CREATE TABLE IF NOT EXISTS migration_audit.schema_applied (
    ddl_sha256 TEXT PRIMARY KEY,
    applied_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP
);

-- Monitoring history (migration_pipeline/monitor.py): one sample of PostgreSQL's health per sensor tick,
-- and every alert raised (once per incident).
CREATE TABLE IF NOT EXISTS migration_audit.monitor_samples (
    id BIGSERIAL PRIMARY KEY,
    sampled_at TIMESTAMP WITH TIME ZONE NOT NULL,
    sample JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_monitor_samples_at ON migration_audit.monitor_samples (sampled_at);
CREATE TABLE IF NOT EXISTS migration_audit.monitor_alerts (
    id BIGSERIAL PRIMARY KEY,
    raised_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    message TEXT NOT NULL,
    numbers JSONB NOT NULL
);

-- Quarantined rows an operator has seen (`migration-pipeline quarantine ack`): the quarantine check warns of
-- rows a load quarantined that neither the table's previous load quarantined nor anyone has seen.
CREATE TABLE IF NOT EXISTS migration_audit.quarantine_seen (
    table_name TEXT NOT NULL,
    source_key TEXT,
    kind TEXT,
    run_id TEXT NOT NULL, -- the load whose quarantine was seen
    seen_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    seen_by TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_quarantine_seen_table_key ON migration_audit.quarantine_seen (table_name, source_key);

-- Corrections of quarantined rows (`migration-pipeline quarantine retry`, migration_pipeline/move/corrections.py):
-- the operator's corrected version of a row the source holds, keyed by its rowid. A snapshot (and a delta
-- sync's view of the source) holds the corrected row instead wherever the source still holds exactly
-- original_row, so a correction lasts until the app itself changes the row; the table's next load admits
-- the row through the same value rules and constraint checks, or quarantines it with its new reason.
-- original_row and corrected_row are raw_row JSON text (bytes as base64), compared as text.
CREATE TABLE IF NOT EXISTS migration_audit.quarantine_corrections (
    id BIGSERIAL PRIMARY KEY,
    table_name TEXT NOT NULL,
    source_key TEXT,
    source_rowid BIGINT NOT NULL,
    original_row TEXT NOT NULL,
    corrected_row TEXT NOT NULL,
    correction_from TEXT NOT NULL, -- the file of corrected rows (with its sha256), or the corrected SQLite file
    corrected_by TEXT NOT NULL,
    corrected_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp(),
    -- pending until its table was loaded again; then admitted, or quarantined (outcome: the new reason);
    -- failed when that load failed (the correction is then not applied)
    state TEXT NOT NULL DEFAULT 'pending'
        CHECK (state IN ('pending', 'admitted', 'quarantined', 'failed')),
    run_id TEXT, -- the load that settled it
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS idx_quarantine_corrections_table_rowid
    ON migration_audit.quarantine_corrections (table_name, source_rowid);

-- The app's workload on SQLite and on the migrated PostgreSQL, side by side (job app_performance,
-- migration_pipeline/watch/app_performance.py): one row per run, backend, operation and concurrency.
CREATE TABLE IF NOT EXISTS migration_audit.app_performance (
    run_id TEXT NOT NULL,
    backend TEXT NOT NULL CHECK (backend IN ('sqlite', 'postgresql')),
    operation TEXT NOT NULL,
    concurrency INTEGER NOT NULL,
    ops BIGINT NOT NULL, -- operations that succeeded in the measured time
    errors BIGINT NOT NULL, -- operations that failed (e.g. SQLite's "database is locked")
    p50_ms DOUBLE PRECISION,
    p95_ms DOUBLE PRECISION,
    p99_ms DOUBLE PRECISION,
    measured_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT CURRENT_TIMESTAMP,
    seconds DOUBLE PRECISION NOT NULL, -- the measured time (after the warm-up)
    error_kinds JSONB NOT NULL DEFAULT '{}', -- {"ErrorType: message": count}
    PRIMARY KEY (run_id, backend, operation, concurrency)
);
