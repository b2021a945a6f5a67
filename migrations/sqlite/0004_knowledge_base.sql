-- Knowledge-base versions: immutable once written. An import or an edit
-- writes a new version; `kb_live` points at the one searches use.
CREATE TABLE kb_versions (
    tenant_id     BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    version       INTEGER NOT NULL,
    parent        INTEGER,
    source        TEXT NOT NULL,
    article_count INTEGER NOT NULL,
    created_at    TEXT NOT NULL,
    published_at  TEXT,
    PRIMARY KEY (tenant_id, version)
);

CREATE TABLE kb_articles (
    tenant_id  BLOB NOT NULL,
    version    INTEGER NOT NULL,
    id         TEXT NOT NULL,
    intent     TEXT,
    language   TEXT NOT NULL,
    question   TEXT NOT NULL,
    answer     TEXT NOT NULL,
    tags       TEXT NOT NULL,
    PRIMARY KEY (tenant_id, version, id),
    FOREIGN KEY (tenant_id, version) REFERENCES kb_versions (tenant_id, version) ON DELETE CASCADE
);

CREATE TABLE kb_live (
    tenant_id  BLOB PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    FOREIGN KEY (tenant_id, version) REFERENCES kb_versions (tenant_id, version)
);
