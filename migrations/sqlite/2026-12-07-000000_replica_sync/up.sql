-- The order in which paths became visible: each commit that stores paths takes the next
-- value of the 'paths' counter (the counter's row lock orders commits), so replicas read new
-- paths once each, in the order they were committed. 0 for paths stored before this column.
ALTER TABLE store_paths ADD COLUMN commit_seq BIGINT NOT NULL DEFAULT 0;
CREATE INDEX store_paths_commit_seq ON store_paths (commit_seq);

-- Change counters every replica follows: 'paths' (the last commit_seq given out) and
-- 'access' (bumped by every change to who may do what: tokens, grants, users, groups,
-- cache visibility).
CREATE TABLE change_counters (
    name TEXT PRIMARY KEY NOT NULL,
    value BIGINT NOT NULL
);
INSERT INTO change_counters (name, value) VALUES ('paths', 0), ('access', 0);

-- Serving processes, and the last commit_seq each has read: a push waits until every live
-- replica has read its commit. A replica whose lease lapsed is no longer waited for, and
-- answers from the database until it has read again.
CREATE TABLE replicas (
    id TEXT PRIMARY KEY NOT NULL,
    seen_seq BIGINT NOT NULL,
    renewed_at TIMESTAMP NOT NULL
);
