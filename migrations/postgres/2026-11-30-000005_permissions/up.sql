-- Fine-grained global permissions, as bits (src/db/permissions.rs, never renumbered):
-- 1 view settings, 2 edit settings, 4 view groups, 8 edit groups, 16 view users,
-- 32 edit users, 64 create caches, 128 view every cache, 256 manage every cache.
-- A group holding all of them (511) makes its members administrators.
ALTER TABLE user_groups ADD COLUMN permissions BIGINT NOT NULL DEFAULT 0;
UPDATE user_groups SET permissions = 64 WHERE can_create_caches;
UPDATE user_groups SET permissions = 511 WHERE can_administer;
ALTER TABLE user_groups DROP COLUMN can_create_caches;
ALTER TABLE user_groups DROP COLUMN can_administer;
