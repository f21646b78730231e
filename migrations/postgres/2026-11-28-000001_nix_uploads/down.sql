DROP INDEX nars_file_hash;
DROP TABLE build_logs;
DROP TABLE pending_nars;
