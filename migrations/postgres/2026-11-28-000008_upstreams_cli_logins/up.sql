-- Caches a push does not repeat: a path one of them already serves is skipped (one row per
-- upstream URL and trusted key).
CREATE TABLE cache_upstreams (
    id BIGSERIAL PRIMARY KEY,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    public_key TEXT NOT NULL,
    UNIQUE (cache_id, url, public_key)
);
-- Caches that exist already keep storing everything (no upstream); new ones start with
-- cache.nixos.org.

-- Whether `hibernation push --force` may store paths an upstream already holds.
ALTER TABLE caches ADD COLUMN allow_force_push BOOLEAN NOT NULL DEFAULT FALSE;

-- `hibernation login` without a token: the CLI waits while a signed-in user approves the
-- request in the dashboard, then collects a new token with a secret only it knows.
CREATE TABLE cli_logins (
    id BIGSERIAL PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    poll_secret_hash TEXT NOT NULL UNIQUE,
    client_name TEXT NOT NULL,
    -- The address that opened the request, to bound open requests per address.
    peer TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    approved_by BIGINT REFERENCES users(id) ON DELETE CASCADE,
    scope_cache_id BIGINT REFERENCES caches(id) ON DELETE CASCADE,
    can_push BOOLEAN NOT NULL DEFAULT TRUE,
    token_expires_at TIMESTAMP
);
