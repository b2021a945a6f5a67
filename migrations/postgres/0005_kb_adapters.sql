-- Each tenant's fine-tuned retrieval model (a query adapter, aicc-search
-- adapter.rs), newest version live. `kb_version` is the knowledge version
-- whose articles it was trained against; `meta` its description and metrics.
CREATE TABLE kb_adapters (
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    kb_version  BIGINT,
    encoder     TEXT NOT NULL,
    meta        JSONB NOT NULL,
    weights     BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
