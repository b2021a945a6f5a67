-- Each tenant's fine-tuned retrieval model (a query adapter, aicc-search
-- adapter.rs), newest version live. `kb_version` is the knowledge version
-- whose articles it was trained against; `meta` its description and metrics.
CREATE TABLE kb_adapters (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    kb_version  INTEGER,
    encoder     TEXT NOT NULL,
    meta        TEXT NOT NULL,
    weights     BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
