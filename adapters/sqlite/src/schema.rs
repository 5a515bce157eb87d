//! The SQLite schema, as numbered migrations applied in order at open.
//!
//! `PRAGMA user_version` holds the number of migrations applied; opening a database runs
//! the missing ones in one transaction. Never edit a released migration: add the next one.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: bots, events, users, requests with outcomes and expansions, the job queue.
    r#"
    CREATE TABLE bots (
        id TEXT PRIMARY KEY,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE events (
        id TEXT PRIMARY KEY,
        bot_id TEXT NOT NULL REFERENCES bots(id),
        name TEXT NOT NULL,
        secret_hash BLOB NOT NULL,
        action TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        bot_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        platform_id TEXT NOT NULL,
        bm_id TEXT NOT NULL,
        shard INTEGER NOT NULL,
        -- The bot engine's own state of this user; Herald never writes it.
        attributes TEXT NOT NULL DEFAULT '{}',
        last_request TEXT,
        last_request_at INTEGER,
        last_request_id TEXT,
        last_event_id TEXT,
        created_at INTEGER NOT NULL,
        UNIQUE (bot_id, platform, platform_id),
        UNIQUE (bot_id, bm_id)
    );
    CREATE INDEX users_by_shard ON users (bot_id, shard, id);
    CREATE INDEX users_by_platform_shard ON users (bot_id, platform, shard, id);
    CREATE TABLE requests (
        id TEXT PRIMARY KEY,
        event_id TEXT NOT NULL,
        record TEXT NOT NULL,
        state TEXT NOT NULL,
        targeted INTEGER NOT NULL DEFAULT 0,
        expansions_pending INTEGER NOT NULL DEFAULT 0,
        delivered INTEGER NOT NULL DEFAULT 0,
        not_found INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        error_samples TEXT NOT NULL DEFAULT '[]',
        delivery_samples TEXT NOT NULL DEFAULT '[]',
        created_at INTEGER NOT NULL,
        updated_at INTEGER
    );
    CREATE INDEX requests_by_event ON requests (event_id, id);
    CREATE TABLE expansions (
        request_id TEXT NOT NULL,
        shard INTEGER NOT NULL,
        cursor TEXT,
        done INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (request_id, shard)
    ) WITHOUT ROWID;
    -- One row per user with a final outcome: the redelivery marker and the count source.
    CREATE TABLE outcomes (
        request_id TEXT NOT NULL,
        user_key TEXT NOT NULL,
        outcome TEXT NOT NULL,
        reason TEXT,
        at INTEGER NOT NULL,
        PRIMARY KEY (request_id, user_key)
    ) WITHOUT ROWID;
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        request_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        -- 'ready' (waiting, or leased until visible_at) or 'dead'.
        state TEXT NOT NULL DEFAULT 'ready',
        visible_at INTEGER NOT NULL,
        -- 1 while a worker holds the job.
        leased INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX jobs_by_visibility ON jobs (state, visible_at);
    "#,
    // 2: bots' connections; users who blocked the bot; failures counted by reason.
    r#"
    ALTER TABLE requests ADD COLUMN failure_reasons TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE bots ADD COLUMN telegram_token TEXT;
    ALTER TABLE bots ADD COLUMN screen_url TEXT;
    ALTER TABLE bots ADD COLUMN signing_secret TEXT;
    ALTER TABLE users ADD COLUMN blocked_at INTEGER;
    "#,
    // 3: operations — rate limits and secret rotation on events, cancelled requests,
    // when jobs died, idempotency keys, and settings (the admin token's hash).
    r#"
    ALTER TABLE events ADD COLUMN rate_limit TEXT;
    ALTER TABLE events ADD COLUMN previous_secret_hash BLOB;
    ALTER TABLE events ADD COLUMN previous_secret_until INTEGER;
    CREATE INDEX events_by_bot ON events (bot_id, id);
    ALTER TABLE requests ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN died_at INTEGER;
    CREATE INDEX jobs_dead ON jobs (state, died_at) WHERE state = 'dead';
    CREATE TABLE idempotency (
        event_id TEXT NOT NULL,
        key TEXT NOT NULL,
        request_id TEXT NOT NULL,
        body_hash BLOB NOT NULL,
        status INTEGER NOT NULL,
        answer TEXT NOT NULL,
        at INTEGER NOT NULL,
        PRIMARY KEY (event_id, key)
    ) WITHOUT ROWID;
    CREATE INDEX idempotency_by_age ON idempotency (at);
    CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 4: users clustered by (bot_id, bm_id), and `everyone` paged in bm_id order. A deliver
    // job's users are then neighbours both in `users` and in `outcomes` (keyed by
    // "bm:<bm_id>"), so its writes touch a few pages instead of one outcome page per user
    // (BENCHMARKS.md, item 2). Expansions under way restart their shard in the new order:
    // what they counted is taken back, and users they reached keep their outcome markers,
    // so they are skipped, not acted on again.
    r#"
    CREATE TABLE users_clustered (
        bot_id TEXT NOT NULL,
        bm_id TEXT NOT NULL,
        platform TEXT NOT NULL,
        platform_id TEXT NOT NULL,
        shard INTEGER NOT NULL,
        -- The bot engine's own state of this user; Herald never writes it.
        attributes TEXT NOT NULL DEFAULT '{}',
        last_request TEXT,
        last_request_at INTEGER,
        last_request_id TEXT,
        last_event_id TEXT,
        created_at INTEGER NOT NULL,
        blocked_at INTEGER,
        PRIMARY KEY (bot_id, bm_id),
        UNIQUE (bot_id, platform, platform_id)
    ) WITHOUT ROWID;
    INSERT INTO users_clustered
        SELECT bot_id, bm_id, platform, platform_id, shard, attributes, last_request,
               last_request_at, last_request_id, last_event_id, created_at, blocked_at
        FROM users ORDER BY bot_id, bm_id;
    UPDATE requests SET targeted = targeted - (
        SELECT count(*) FROM expansions e JOIN users u
            ON u.bot_id = json_extract(requests.record, '$.bot_id') AND u.shard = e.shard
           AND u.id <= CAST(e.cursor AS INTEGER)
           AND (json_extract(requests.record, '$.audience.platform') = 'any'
                OR u.platform = json_extract(requests.record, '$.audience.platform.only'))
        WHERE e.request_id = requests.id AND e.done = 0 AND e.cursor IS NOT NULL)
    WHERE id IN (SELECT request_id FROM expansions WHERE done = 0 AND cursor IS NOT NULL);
    UPDATE expansions SET cursor = NULL WHERE done = 0;
    UPDATE jobs SET payload = json_remove(payload, '$.cursor') WHERE kind = 'expand';
    DROP TABLE users;
    ALTER TABLE users_clustered RENAME TO users;
    CREATE INDEX users_by_shard ON users (bot_id, shard, bm_id);
    CREATE INDEX users_by_platform_shard ON users (bot_id, platform, shard, bm_id);
    "#,
    // 5: when a job became due (not moved by postponing it, so that the queue's oldest
    // age counts a job waiting its turn).
    r#"
    ALTER TABLE jobs ADD COLUMN due_at INTEGER;
    UPDATE jobs SET due_at = visible_at;
    "#,
    // 6: a request's `data` stored once. `request_data` holds it; the record keeps `{}`;
    // a user whose `last_request` is the request's data as it is holds NULL and refers
    // to it by `last_request_id` (a 205 KB request to 2,000 users once copied 412 MB), and
    // only users with data of their own (merged per user) keep a copy. Jobs know their bot,
    // so that a bot's backlog can be counted. Existing copies are migrated.
    r#"
    CREATE TABLE request_data (
        request_id TEXT PRIMARY KEY,
        data TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO request_data (request_id, data)
        SELECT id, coalesce(json_extract(record, '$.data'), '{}') FROM requests;
    UPDATE requests SET record = json_set(record, '$.data', json('{}'));
    UPDATE users SET last_request = NULL
     WHERE last_request IS NOT NULL
       AND json(last_request) = (SELECT json(d.data) FROM request_data d
                                  WHERE d.request_id = users.last_request_id);
    ALTER TABLE jobs ADD COLUMN bot_id TEXT;
    UPDATE jobs SET bot_id = (SELECT json_extract(r.record, '$.bot_id') FROM requests r
                               WHERE r.id = jobs.request_id);
    CREATE INDEX jobs_by_bot ON jobs (bot_id, state);
    CREATE INDEX requests_by_age ON requests (created_at);
    "#,
    // 7: a bot's connections as one map keyed by channel (`{"telegram": {"token": …}}`),
    // read from the columns of migration 2, which go.
    r#"
    ALTER TABLE bots ADD COLUMN connections TEXT NOT NULL DEFAULT '{}';
    UPDATE bots SET connections = json_patch(
        CASE WHEN telegram_token IS NULL THEN '{}'
             ELSE json_object('telegram', json_object('token', telegram_token)) END,
        CASE WHEN screen_url IS NULL AND signing_secret IS NULL THEN '{}'
             ELSE json_object('engine', json_patch('{}', json_object(
                 'url', screen_url, 'signing_secret', signing_secret))) END);
    ALTER TABLE bots DROP COLUMN telegram_token;
    ALTER TABLE bots DROP COLUMN screen_url;
    ALTER TABLE bots DROP COLUMN signing_secret;
    "#,
    // 8: delivery lanes. A job's priority is its lane's (transactional 0, bulk 1), leased in
    // that order; jobs queued before lanes are bulk. An event may set its requests' lane.
    r#"
    ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX jobs_by_priority ON jobs (state, priority, visible_at);
    ALTER TABLE events ADD COLUMN lane TEXT;
    "#,
    // 9: each bot's bulk requests not yet seen final, in the order they were accepted: the
    // work ahead of a bulk request, which its ETA counts. Requests accepted before this
    // migration are not listed (their ETAs do not count each other).
    r#"
    CREATE TABLE open_bulk (
        bot_id TEXT NOT NULL,
        request_id TEXT NOT NULL,
        PRIMARY KEY (bot_id, request_id)
    ) WITHOUT ROWID;
    "#,
    // 10: where a Telegram group a user stands for moved when it became a supergroup
    // (Herald's own; platform_id stays the engine's).
    r#"
    ALTER TABLE users ADD COLUMN migrated_chat_id TEXT;
    "#,
];

/// Bring `conn`'s schema up to date.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    migrate_to(conn, MIGRATIONS.len())
}

/// Apply the migrations up to `version` (not past it): upgrade tests build an older
/// database with it.
pub fn migrate_to(conn: &mut Connection, version: usize) -> rusqlite::Result<()> {
    let version = version.min(MIGRATIONS.len());
    let applied: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if applied >= version {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for migration in &MIGRATIONS[applied..version] {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", version)?;
    tx.commit()
}

/// The schema version this build writes.
pub fn version() -> usize {
    MIGRATIONS.len()
}
