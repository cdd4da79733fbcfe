-- The Twitter-analysis app's PostgreSQL schema, exactly as the seed plan defines it
-- (shared/seed/migration-plan.md, "Create PostgreSQL Schema"). Single source of truth:
-- migration_pipeline.catalog reads tables, columns, types, limits, constraints and the
-- foreign-key load order from this file. Statements are idempotent so the file can be
-- applied to a database that already has the schema.
--
-- A "-- migration: optional_in_source" line directly above a CREATE TABLE marks a table the app's
-- SQLite database may lack (the app never creates it there); the table is then created empty. Every
-- other table must be in the source: a source without one is refused before anything is written, as it
-- cannot be the app's database (a wrong path, an empty or half-copied file, another database).

CREATE TABLE IF NOT EXISTS users (
    id VARCHAR(255) PRIMARY KEY,
    username VARCHAR(255) UNIQUE NOT NULL,
    profile_data JSONB,
    profile_picture_url TEXT,
    last_scraped TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS tweets (
    id VARCHAR(255) PRIMARY KEY,
    user_id VARCHAR(255) NOT NULL REFERENCES users(id),
    text TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE NOT NULL,
    url TEXT,
    is_reply BOOLEAN,
    metadata JSONB,
    created_in_db TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS personality_analysis (
    id VARCHAR(255) PRIMARY KEY,
    user_id VARCHAR(255) NOT NULL REFERENCES users(id),
    traits JSONB NOT NULL,
    interests JSONB NOT NULL,
    communication_style JSONB NOT NULL,
    analyzed_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS funnel_progress (
    user_id VARCHAR(255) PRIMARY KEY REFERENCES users(id),
    current_command_index INTEGER DEFAULT 0,
    completed_commands JSONB DEFAULT '[]'::jsonb,
    command_responses JSONB DEFAULT '{}'::jsonb,
    last_updated TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS funnel_completion (
    user_id VARCHAR(255) PRIMARY KEY REFERENCES users(id),
    completed_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    completion_data JSONB DEFAULT '{}'::jsonb
);

CREATE TABLE IF NOT EXISTS referral_tracking (
    id SERIAL PRIMARY KEY,
    referral_code VARCHAR(255) NOT NULL,
    referrer_user_id VARCHAR(255) NOT NULL REFERENCES users(id),
    referred_user_id VARCHAR(255) NOT NULL REFERENCES users(id),
    used_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    UNIQUE(referred_user_id)
);

CREATE TABLE IF NOT EXISTS referral_codes (
    code VARCHAR(255) PRIMARY KEY,
    owner_user_id VARCHAR(255) NOT NULL REFERENCES users(id),
    usage_count INTEGER DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS referral_usage_log (
    id SERIAL PRIMARY KEY,
    referral_code VARCHAR(255) NOT NULL REFERENCES referral_codes(code),
    used_by_user_id VARCHAR(255) NOT NULL REFERENCES users(id),
    used_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP
);

-- Analysis Queue Management Tables
-- migration: optional_in_source (the app never creates it in SQLite)
CREATE TABLE IF NOT EXISTS analysis_queue (
    job_id SERIAL PRIMARY KEY,
    user_id VARCHAR(255) NOT NULL REFERENCES users(id),
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    priority INTEGER DEFAULT 0,
    total_chunks INTEGER NOT NULL,
    processed_chunks INTEGER DEFAULT 0,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT CURRENT_TIMESTAMP,
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    error TEXT,
    CONSTRAINT valid_status CHECK (status IN ('pending', 'processing', 'completed', 'failed'))
);

-- migration: optional_in_source (the app never creates it in SQLite)
CREATE TABLE IF NOT EXISTS analysis_chunks (
    chunk_id SERIAL PRIMARY KEY,
    job_id INTEGER REFERENCES analysis_queue(job_id),
    chunk_index INTEGER NOT NULL,
    tweet_count INTEGER NOT NULL,
    status VARCHAR(50) NOT NULL DEFAULT 'pending',
    started_at TIMESTAMP WITH TIME ZONE,
    completed_at TIMESTAMP WITH TIME ZONE,
    result JSONB,
    error TEXT,
    CONSTRAINT valid_chunk_status CHECK (status IN ('pending', 'processing', 'completed', 'failed'))
);

-- Indexes (optimized for PostgreSQL)
CREATE INDEX IF NOT EXISTS idx_tweets_user_created ON tweets(user_id, created_at);
CREATE INDEX IF NOT EXISTS idx_tweets_created ON tweets(created_at);
CREATE INDEX IF NOT EXISTS idx_tweets_text ON tweets USING gin (to_tsvector('english', text));
CREATE INDEX IF NOT EXISTS idx_referral_tracking_code ON referral_tracking(referral_code);
CREATE INDEX IF NOT EXISTS idx_referral_tracking_referrer ON referral_tracking(referrer_user_id);
CREATE INDEX IF NOT EXISTS idx_referral_codes_owner ON referral_codes(owner_user_id);
CREATE INDEX IF NOT EXISTS idx_referral_usage_code ON referral_usage_log(referral_code);

-- Additional indexes for analysis tables
CREATE INDEX IF NOT EXISTS idx_analysis_queue_status ON analysis_queue(status);
CREATE INDEX IF NOT EXISTS idx_analysis_queue_user ON analysis_queue(user_id);
CREATE INDEX IF NOT EXISTS idx_analysis_chunks_job_status ON analysis_chunks(job_id, status);
CREATE INDEX IF NOT EXISTS idx_analysis_queue_priority ON analysis_queue(priority DESC, created_at ASC);
