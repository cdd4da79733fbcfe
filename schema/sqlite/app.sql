-- The app's own SQLite tables, as its code creates them (shared/docs/source-app.md): loose declared types,
-- TEXT ids, JSON and DATETIME columns, AUTOINCREMENT ids. Not PostgreSQL: the catalog reads only schema/*.sql.
-- Read by the sample generator (samples/sample_data.py) and the rollback export (switch/rollback.py).
CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT, profile_data JSON, profile_picture_url TEXT,
    last_scraped DATETIME, created_at DATETIME DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE tweets (id TEXT PRIMARY KEY, user_id TEXT, text TEXT, created_at DATETIME, url TEXT,
    is_reply BOOLEAN, metadata JSON, created_in_db DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(id));
CREATE TABLE personality_analysis (id TEXT PRIMARY KEY, user_id TEXT, traits JSON, interests JSON,
    communication_style JSON, analyzed_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (user_id) REFERENCES users(id));
CREATE TABLE funnel_progress (user_id TEXT PRIMARY KEY, current_command_index INTEGER DEFAULT 0,
    completed_commands JSON DEFAULT '[]', command_responses JSON DEFAULT '{}',
    last_updated DATETIME DEFAULT CURRENT_TIMESTAMP, FOREIGN KEY (user_id) REFERENCES users(id));
CREATE TABLE funnel_completion (user_id TEXT PRIMARY KEY, completed_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    completion_data JSON DEFAULT '{}', FOREIGN KEY (user_id) REFERENCES users(id));
CREATE TABLE referral_tracking (id INTEGER PRIMARY KEY AUTOINCREMENT, referral_code TEXT,
    referrer_user_id TEXT, referred_user_id TEXT, used_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (referrer_user_id) REFERENCES users(id), FOREIGN KEY (referred_user_id) REFERENCES users(id));
CREATE TABLE referral_codes (code TEXT PRIMARY KEY, owner_user_id TEXT, usage_count INTEGER DEFAULT 0,
    created_at DATETIME DEFAULT CURRENT_TIMESTAMP, FOREIGN KEY (owner_user_id) REFERENCES users(id));
CREATE TABLE referral_usage_log (id INTEGER PRIMARY KEY AUTOINCREMENT, referral_code TEXT,
    used_by_user_id TEXT, used_at DATETIME DEFAULT CURRENT_TIMESTAMP,
    FOREIGN KEY (referral_code) REFERENCES referral_codes(code), FOREIGN KEY (used_by_user_id) REFERENCES users(id));
