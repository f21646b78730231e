ALTER TABLE api_tokens DROP COLUMN cache_scoped;
