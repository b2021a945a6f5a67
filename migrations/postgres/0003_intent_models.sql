-- A tenant's trained intent classifiers, newest version live. `meta` is the
-- artifact's description (labels, thresholds, encoder, metrics); `weights`
-- its safetensors bytes.
CREATE TABLE intent_models (
    tenant_id   UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     BIGINT NOT NULL,
    encoder     TEXT NOT NULL,
    meta        JSONB NOT NULL,
    weights     BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
