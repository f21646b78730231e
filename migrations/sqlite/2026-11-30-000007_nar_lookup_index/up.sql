-- Which path of a cache uses a NAR: found from the NAR's side (a NAR has few paths), not by
-- walking every path of the cache. Its nar_id prefix serves what the old index did.
CREATE INDEX store_paths_nar_cache ON store_paths (nar_id, cache_id);
DROP INDEX store_paths_nar_id;
