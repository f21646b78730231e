-- Protocol traffic per cache and hour, written in batches by every server process.
CREATE TABLE traffic_hourly (
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    hour TIMESTAMP NOT NULL,
    narinfo_hits BIGINT NOT NULL DEFAULT 0,
    narinfo_misses BIGINT NOT NULL DEFAULT 0,
    nar_bytes BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (cache_id, hour)
);
CREATE INDEX store_paths_created ON store_paths (created_at);
