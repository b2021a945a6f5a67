-- Knowledge-base versions: immutable once written. An import or an edit
-- writes a new version; `kb_live` points at the one searches use.
CREATE TABLE kb_versions (
    tenant_id     UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version       BIGINT NOT NULL,
    parent        BIGINT,
    source        TEXT NOT NULL,
    article_count BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    published_at  TIMESTAMPTZ,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE kb_articles (
    tenant_id  UUID NOT NULL,
    version    BIGINT NOT NULL,
    id         TEXT NOT NULL,
    intent     TEXT,
    language   TEXT NOT NULL,
    question   TEXT NOT NULL,
    answer     TEXT NOT NULL,
    tags       JSONB NOT NULL,
    PRIMARY KEY (tenant_id, version, id),
    FOREIGN KEY (tenant_id, version) REFERENCES kb_versions (tenant_id, version) ON DELETE CASCADE
);

CREATE TABLE kb_live (
    tenant_id  UUID PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, version) REFERENCES kb_versions (tenant_id, version)
);
