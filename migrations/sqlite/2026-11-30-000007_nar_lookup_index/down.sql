CREATE INDEX store_paths_nar_id ON store_paths (nar_id);
DROP INDEX store_paths_nar_cache;
