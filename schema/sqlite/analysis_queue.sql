-- The queue tables the app's code defines but never creates in SQLite (010_twitter.sql marks them
-- optional_in_source): what the sample generator writes with --with-queue, and the rollback's fallback.
CREATE TABLE analysis_queue (job_id INTEGER PRIMARY KEY AUTOINCREMENT, user_id TEXT, status TEXT DEFAULT 'pending',
    priority INTEGER DEFAULT 0, total_chunks INTEGER, processed_chunks INTEGER DEFAULT 0,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP, started_at DATETIME, completed_at DATETIME, error TEXT);
CREATE TABLE analysis_chunks (chunk_id INTEGER PRIMARY KEY AUTOINCREMENT, job_id INTEGER, chunk_index INTEGER,
    tweet_count INTEGER, status TEXT DEFAULT 'pending', started_at DATETIME, completed_at DATETIME,
    result JSON, error TEXT);
