-- Canned responses agents insert into replies.
CREATE TABLE canned_responses (
    id          BLOB PRIMARY KEY,
    tenant_id   BLOB NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    text        TEXT NOT NULL,
    language    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX canned_by_tenant ON canned_responses (tenant_id, title);
-- Finding a returning customer's earlier conversations.
CREATE INDEX conversations_by_customer ON conversations (tenant_id, (customer ->> 'user_id'));
-- When the status last changed: queue order and waiting time (a customer
-- writing while queued must not lose their place).
ALTER TABLE conversations ADD COLUMN status_at TEXT NOT NULL DEFAULT '1970-01-01T00:00:00+00:00';
UPDATE conversations SET status_at = updated_at;
