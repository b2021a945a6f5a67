-- Analytics read conversations and events of a tenant by creation time.
CREATE INDEX conversations_by_created ON conversations (tenant_id, created_at);
CREATE INDEX events_by_created ON events (tenant_id, created_at);
