DROP TABLE replicas;
DROP TABLE change_counters;
DROP INDEX store_paths_commit_seq;
ALTER TABLE store_paths DROP COLUMN commit_seq;
