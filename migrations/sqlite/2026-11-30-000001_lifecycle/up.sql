-- Storage lifecycle: what a cache does at its quota, how long unused paths stay, pins that
-- keep closures, and NARs no path uses, kept for a grace period before garbage collection.
ALTER TABLE caches ADD COLUMN quota_policy TEXT NOT NULL DEFAULT 'refuse';
ALTER TABLE caches ADD COLUMN retention_seconds BIGINT;

-- Set when the last path using a NAR goes (cleared when a push uses it again); garbage
-- collection deletes NARs unreferenced for longer than its grace period.
ALTER TABLE nars ADD COLUMN unreferenced_since TIMESTAMP;
CREATE INDEX nars_unreferenced_since ON nars (unreferenced_since);

-- A named pin keeps a path and its closure in its cache (re-pinning a name moves it).
CREATE TABLE pins (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    store_path TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP,
    UNIQUE (cache_id, name)
);

-- What eviction, retention and garbage collection removed, for the dashboard.
CREATE TABLE reclaims (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    cache_id BIGINT REFERENCES caches(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    at TIMESTAMP NOT NULL,
    paths BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    objects BIGINT NOT NULL
);
CREATE INDEX reclaims_cache_at ON reclaims (cache_id, at);
CREATE INDEX store_paths_cache_created ON store_paths (cache_id, created_at);
