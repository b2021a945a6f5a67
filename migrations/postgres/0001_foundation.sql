-- Foundation schema: tenants, users, conversations, messages, events, feedback.
-- Kept in step with migrations/sqlite/0001_foundation.sql (same tables and columns).

CREATE TABLE secrets (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE tenants (
    id          UUID PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    settings    JSONB NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email           TEXT NOT NULL,
    name            TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('admin', 'agent')),
    teams           JSONB NOT NULL,
    max_concurrent  INTEGER NOT NULL,
    password_hash   TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, email)
);

CREATE TABLE conversations (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status      TEXT NOT NULL CHECK (status IN ('bot', 'queued', 'assigned', 'closed')),
    agent_id    UUID REFERENCES users (id) ON DELETE SET NULL,
    team        TEXT,
    locale      TEXT NOT NULL,
    customer    JSONB NOT NULL,
    -- The seq of the newest message; bumped under the row lock on every append.
    last_seq    BIGINT NOT NULL DEFAULT 0,
    csat        SMALLINT CHECK (csat BETWEEN 1 AND 5),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX conversations_by_status ON conversations (tenant_id, status, updated_at DESC);

CREATE TABLE messages (
    id              UUID PRIMARY KEY,
    conversation_id UUID NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    sender          TEXT NOT NULL CHECK (sender IN ('customer', 'bot', 'agent', 'system')),
    sender_id       UUID,
    text            TEXT NOT NULL,
    client_msg_id   UUID,
    intent          TEXT,
    citations       JSONB NOT NULL,
    quick_replies   JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    UNIQUE (conversation_id, seq),
    UNIQUE (conversation_id, client_msg_id)
);

CREATE TABLE events (
    id              BIGSERIAL PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    conversation_id UUID,
    actor           UUID,
    kind            TEXT NOT NULL,
    data            JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX events_by_tenant ON events (tenant_id, id DESC);
CREATE INDEX events_by_conversation ON events (conversation_id, id DESC);

CREATE TABLE feedback (
    message_id      UUID PRIMARY KEY REFERENCES messages (id) ON DELETE CASCADE,
    conversation_id UUID NOT NULL,
    tenant_id       UUID NOT NULL,
    rating          TEXT NOT NULL CHECK (rating IN ('up', 'down')),
    comment         TEXT,
    created_at      TIMESTAMPTZ NOT NULL
);
