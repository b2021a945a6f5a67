-- A tenant's trained intent classifiers, newest version live. `meta` is the
-- artifact's description (labels, thresholds, encoder, metrics); `weights`
-- its safetensors bytes.
CREATE TABLE intent_models (
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    encoder     TEXT NOT NULL,
    meta        TEXT NOT NULL,
    weights     BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version)
);
