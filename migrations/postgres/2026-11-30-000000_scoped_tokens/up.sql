-- A token limited to caches stays limited when those caches are deleted (no rows left in
-- token_caches must not read as "every cache").
ALTER TABLE api_tokens ADD COLUMN cache_scoped BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE api_tokens SET cache_scoped = TRUE WHERE id IN (SELECT token_id FROM token_caches);
