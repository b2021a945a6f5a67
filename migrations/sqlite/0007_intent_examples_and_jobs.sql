-- Each tenant's labelled intent examples (`POST /v1/admin/intents/import`
-- replaces the whole set in one transaction), in import order.
CREATE TABLE intent_examples (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    text        TEXT NOT NULL,
    intent      TEXT NOT NULL,
    language    TEXT,
    PRIMARY KEY (tenant_id, position)
);

-- Background jobs (intent training), so any replica answers `GET /v1/admin/jobs/{id}`.
CREATE TABLE jobs (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    progress    REAL NOT NULL DEFAULT 0,
    metrics     TEXT,
    error       TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX jobs_by_tenant ON jobs (tenant_id, kind, created_at);
-- At most one active job of a kind per tenant: the second start gets 409.
CREATE UNIQUE INDEX jobs_one_active ON jobs (tenant_id, kind) WHERE state IN ('queued', 'running');
