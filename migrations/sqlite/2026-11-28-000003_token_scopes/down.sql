DROP TABLE token_caches;
ALTER TABLE api_tokens DROP COLUMN can_push;
