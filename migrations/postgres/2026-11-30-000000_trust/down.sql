DROP INDEX users_login;
ALTER TABLE users DROP COLUMN login;
ALTER TABLE cache_permissions DROP COLUMN can_manage;
ALTER TABLE group_cache_permissions DROP COLUMN can_manage;
DROP TABLE setup_codes;
DROP INDEX sign_in_failures_account;
ALTER TABLE sign_in_failures DROP COLUMN account;
ALTER TABLE api_tokens DROP COLUMN cache_scoped;
