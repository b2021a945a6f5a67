-- Foundation schema: tenants, users, conversations, messages, events, feedback.
-- SQLite spelling: UUIDs as 16-byte BLOBs, timestamps as RFC 3339 TEXT, JSON as TEXT.
-- Kept in step with migrations/postgres/0001_foundation.sql (same tables and columns).

CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE tenants (
    id          BLOB PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    settings    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE users (
    id              BLOB PRIMARY KEY,
    tenant_id       BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email           TEXT NOT NULL,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    teams           TEXT NOT NULL,
    max_concurrent  INTEGER NOT NULL,
    password_hash   TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE TABLE conversations (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('bot', 'queued', 'assigned', 'closed')),
    agent_id    BLOB REFERENCES users (id) ON DELETE SET NULL,
    team        TEXT,
    locale      TEXT NOT NULL,
    customer    TEXT NOT NULL,
    -- The seq of the newest message; bumped under the row lock on every append.
    last_seq    INTEGER NOT NULL DEFAULT 0,
    csat        INTEGER CHECK (csat BETWEEN 1 AND 5),
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX conversations_by_status ON conversations (tenant_id, status, updated_at DESC);

CREATE TABLE messages (
    id              BLOB PRIMARY KEY,
    conversation_id BLOB NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    sender          TEXT NOT NULL CHECK (sender IN ('customer', 'bot', 'agent', 'system')),
    sender_id       BLOB,
    text            TEXT NOT NULL,
    client_msg_id   BLOB,
    intent          TEXT,
    citations       TEXT NOT NULL,
    quick_replies   TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, client_msg_id)
);

CREATE TABLE events (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id BLOB,
    actor           BLOB,
    kind            TEXT NOT NULL,
    data            TEXT NOT NULL,
    created_at      TEXT NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant_id, id DESC);
CREATE INDEX events_by_conversation ON events (conversation_id, id DESC);

CREATE TABLE feedback (
    message_id      BLOB PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id BLOB NOT NULL,
    tenant_id       BLOB NOT NULL,
    rating          TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment         TEXT,
    created_at      TEXT NOT NULL
);
