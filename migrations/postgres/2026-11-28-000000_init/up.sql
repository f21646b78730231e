CREATE TABLE caches (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    is_public BOOLEAN NOT NULL DEFAULT FALSE,
    priority INTEGER NOT NULL DEFAULT 40,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

CREATE TABLE cache_keys (
    id BIGSERIAL PRIMARY KEY,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    public_key TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    UNIQUE (cache_id, public_key)
);

-- One row per distinct NAR, shared by every cache that holds it.
CREATE TABLE nars (
    id BIGSERIAL PRIMARY KEY,
    nar_hash TEXT NOT NULL UNIQUE,
    nar_size BIGINT NOT NULL CHECK (nar_size > 0),
    compression TEXT NOT NULL,
    file_hash TEXT NOT NULL,
    file_size BIGINT NOT NULL,
    storage_key TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

CREATE TABLE store_paths (
    id BIGSERIAL PRIMARY KEY,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    nar_id BIGINT NOT NULL REFERENCES nars(id),
    hash_part TEXT NOT NULL,
    name TEXT NOT NULL,
    deriver TEXT,
    ca TEXT,
    signatures TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    last_accessed_at TIMESTAMP,
    access_count BIGINT NOT NULL DEFAULT 0,
    UNIQUE (cache_id, hash_part)
);
CREATE INDEX store_paths_nar_id ON store_paths (nar_id);

CREATE TABLE path_references (
    store_path_id BIGINT NOT NULL REFERENCES store_paths(id) ON DELETE CASCADE,
    reference TEXT NOT NULL,
    PRIMARY KEY (store_path_id, reference)
);
CREATE INDEX path_references_reference ON path_references (reference);

CREATE TABLE users (
    id BIGSERIAL PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    is_admin BOOLEAN NOT NULL DEFAULT FALSE,
    password_hash TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc')
);

CREATE TABLE cache_permissions (
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    can_push BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (cache_id, user_id)
);
CREATE INDEX cache_permissions_user ON cache_permissions (user_id);

CREATE TABLE api_tokens (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    expires_at TIMESTAMP,
    revoked_at TIMESTAMP,
    last_used_at TIMESTAMP,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    UNIQUE (user_id, name)
);
