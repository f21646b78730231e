-- NARs uploaded by `nix copy --to` that wait for their narinfo (Nix sends the NAR first).
CREATE TABLE pending_nars (
    id BIGSERIAL PRIMARY KEY,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    file_hash TEXT NOT NULL,
    compression TEXT NOT NULL,
    file_size BIGINT NOT NULL,
    nar_hash TEXT NOT NULL,
    nar_size BIGINT NOT NULL,
    storage_key TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    UNIQUE (cache_id, file_hash)
);

-- Build logs uploaded with `nix store copy-log --to`, read by `nix log`.
CREATE TABLE build_logs (
    id BIGSERIAL PRIMARY KEY,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    drv TEXT NOT NULL,
    storage_key TEXT NOT NULL UNIQUE,
    content_encoding TEXT,
    created_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
    UNIQUE (cache_id, drv)
);

CREATE INDEX nars_file_hash ON nars (file_hash);
