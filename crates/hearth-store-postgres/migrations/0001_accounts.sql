-- Accounts, sessions, API keys, audit: hearth-store-sqlite's schema in PostgreSQL's dialect.
-- Times are unix milliseconds (UTC); ids are UUIDv7 text.

CREATE TABLE users (
    id                     TEXT PRIMARY KEY,
    username               TEXT NOT NULL,
    -- Unicode lowercase of username: what uniqueness and lookups use.
    username_key           TEXT NOT NULL UNIQUE,
    display_name           TEXT NOT NULL,
    email                  TEXT,
    role                   TEXT NOT NULL CHECK (role IN ('admin', 'user', 'viewer', 'pending')),
    password_hash          TEXT,
    disabled               BOOLEAN NOT NULL DEFAULT FALSE,
    created_at             BIGINT NOT NULL,
    credentials_changed_at BIGINT NOT NULL,
    last_login_at          BIGINT
);
CREATE INDEX users_active_admins ON users (role, disabled);

CREATE TABLE oidc_links (
    issuer     TEXT NOT NULL,
    subject    TEXT NOT NULL,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX oidc_links_user ON oidc_links (user_id);

CREATE TABLE totp_secrets (
    user_id    TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    secret     BYTEA NOT NULL,
    enabled    BOOLEAN NOT NULL DEFAULT FALSE,
    last_step  BIGINT,
    created_at BIGINT NOT NULL
);

CREATE TABLE recovery_codes (
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash    BYTEA NOT NULL,
    used    BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, hash)
);

CREATE TABLE groups (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id  TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE group_permissions (
    group_id   TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    permission TEXT NOT NULL,
    PRIMARY KEY (group_id, permission)
);

CREATE TABLE sessions (
    id                  TEXT PRIMARY KEY,
    user_id             TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash          BYTEA NOT NULL UNIQUE,
    csrf_secret         BYTEA NOT NULL,
    created_at          BIGINT NOT NULL,
    last_seen_at        BIGINT NOT NULL,
    idle_timeout_ms     BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    client_address      TEXT,
    user_agent          TEXT,
    revoked_at          BIGINT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    owner_id     TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL UNIQUE,
    secret_hash  BYTEA NOT NULL,
    -- JSON arrays of strings.
    scopes       TEXT NOT NULL,
    models       TEXT NOT NULL,
    expires_at   BIGINT,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    use_count    BIGINT NOT NULL DEFAULT 0,
    revoked_at   BIGINT
);
CREATE INDEX api_keys_owner ON api_keys (owner_id);

-- The audit chain. Rows are only inserted, and deleted only from the start (retention).
CREATE TABLE audit_events (
    seq            BIGINT PRIMARY KEY,
    time           BIGINT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    client_address TEXT,
    detail         TEXT NOT NULL,
    prev_hash      BYTEA NOT NULL,
    hash           BYTEA NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time);
CREATE FUNCTION audit_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_update();

-- One row: the chain's last event (appends lock it) and the retention checkpoint.
CREATE TABLE audit_head (
    id              BIGINT PRIMARY KEY CHECK (id = 1),
    last_seq        BIGINT NOT NULL,
    last_hash       BYTEA NOT NULL,
    checkpoint_seq  BIGINT,
    checkpoint_hash BYTEA
);
INSERT INTO audit_head (id, last_seq, last_hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

CREATE TABLE login_failures (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind    TEXT NOT NULL CHECK (kind IN ('account', 'address')),
    subject TEXT NOT NULL,
    at      BIGINT NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures (kind, subject, at);
CREATE INDEX login_failures_at ON login_failures (at);
