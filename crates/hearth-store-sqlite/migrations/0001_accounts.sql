-- Accounts, sessions, API keys, audit. Times are unix milliseconds (UTC); ids are UUIDv7 text.

CREATE TABLE users (
    id                     TEXT PRIMARY KEY,
    username               TEXT NOT NULL,
    -- Unicode lowercase of username: what uniqueness and lookups use.
    username_key           TEXT NOT NULL UNIQUE,
    display_name           TEXT NOT NULL,
    email                  TEXT,
    role                   TEXT NOT NULL CHECK (role IN ('admin', 'user', 'viewer', 'pending')),
    password_hash          TEXT,
    disabled               INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at             INTEGER NOT NULL,
    credentials_changed_at INTEGER NOT NULL,
    last_login_at          INTEGER
) STRICT;
CREATE INDEX users_active_admins ON users (role, disabled);

CREATE TABLE oidc_links (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;
CREATE INDEX oidc_links_user ON oidc_links (user_id);

CREATE TABLE totp_secrets (
    user_id    TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret     BLOB NOT NULL,
    enabled    INTEGER NOT NULL DEFAULT 0 CHECK (enabled IN (0, 1)),
    last_step  INTEGER,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash    BLOB NOT NULL,
    used    INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
    PRIMARY KEY (user_id, hash)
) STRICT;

CREATE TABLE groups (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
) STRICT;
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE group_permissions (
    group_id   TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (group_id, permission)
) STRICT;

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash          BLOB NOT NULL UNIQUE,
    csrf_secret         BLOB NOT NULL,
    created_at          INTEGER NOT NULL,
    last_seen_at        INTEGER NOT NULL,
    idle_timeout_ms     INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    client_address      TEXT,
    user_agent          TEXT,
    revoked_at          INTEGER
) STRICT;
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL UNIQUE,
    secret_hash  BLOB NOT NULL,
    -- JSON arrays of strings.
    scopes       TEXT NOT NULL,
    models       TEXT NOT NULL,
    expires_at   INTEGER,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    use_count    INTEGER NOT NULL DEFAULT 0,
    revoked_at   INTEGER
) STRICT;
CREATE INDEX api_keys_owner ON api_keys (owner_id);

-- The audit chain. Rows are only inserted, and deleted only from the start (retention).
CREATE TABLE audit_events (
    seq            INTEGER PRIMARY KEY,
    time           INTEGER NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    client_address TEXT,
    detail         TEXT NOT NULL,
    prev_hash      BLOB NOT NULL,
    hash           BLOB NOT NULL
) STRICT;
CREATE INDEX audit_events_time ON audit_events (time);
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

-- One row: the chain's last event (appends lock it) and the retention checkpoint.
CREATE TABLE audit_head (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq        INTEGER NOT NULL,
    last_hash       BLOB NOT NULL,
    checkpoint_seq  INTEGER,
    checkpoint_hash BLOB
) STRICT;
INSERT INTO audit_head (id, last_seq, last_hash) VALUES (1, 0, zeroblob(32));

CREATE TABLE login_failures (
    id      INTEGER PRIMARY KEY,
    kind    TEXT NOT NULL CHECK (kind IN ('account', 'address')),
    subject TEXT NOT NULL,
    at      INTEGER NOT NULL
) STRICT;
CREATE INDEX login_failures_subject ON login_failures (kind, subject, at);
CREATE INDEX login_failures_at ON login_failures (at);
