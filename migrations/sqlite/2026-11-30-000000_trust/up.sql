-- A token limited to caches stays limited when those caches are deleted (no rows left in
-- token_caches must not read as "every cache").
ALTER TABLE api_tokens ADD COLUMN cache_scoped BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE api_tokens SET cache_scoped = TRUE WHERE id IN (SELECT token_id FROM token_caches);

-- Failed sign-ins count per address and per account (the email tried).
ALTER TABLE sign_in_failures ADD COLUMN account TEXT NOT NULL DEFAULT '';
CREATE INDEX sign_in_failures_account ON sign_in_failures (account, at);

-- The one-time code that /setup asks for on a fresh instance (printed in the server log).
CREATE TABLE setup_codes (
    id INTEGER PRIMARY KEY NOT NULL,
    code TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- Per-cache rights are read, push and manage (settings, grants, clear, delete). Earlier
-- push grants meant full control; they keep push only (administrators grant manage).
ALTER TABLE cache_permissions ADD COLUMN can_manage BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE group_cache_permissions ADD COLUMN can_manage BOOLEAN NOT NULL DEFAULT FALSE;

-- Users are identified by a unique login that never changes (the name given to
-- `admin create-user`, or the email of users created in the dashboard); `name` is only the
-- display name, which its owner may change. Existing users log in as their current name.
ALTER TABLE users ADD COLUMN login TEXT NOT NULL DEFAULT '';
UPDATE users SET login = name;
CREATE UNIQUE INDEX users_login ON users (login);
