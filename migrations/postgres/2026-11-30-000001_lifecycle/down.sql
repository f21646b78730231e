DROP INDEX store_paths_cache_created;
DROP TABLE reclaims;
DROP TABLE pins;
DROP INDEX nars_unreferenced_since;
ALTER TABLE nars DROP COLUMN unreferenced_since;
ALTER TABLE caches DROP COLUMN retention_seconds;
ALTER TABLE caches DROP COLUMN quota_policy;
