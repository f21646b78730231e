ALTER TABLE user_groups ADD COLUMN can_create_caches BOOLEAN NOT NULL DEFAULT 0;
ALTER TABLE user_groups ADD COLUMN can_administer BOOLEAN NOT NULL DEFAULT 0;
UPDATE user_groups SET can_create_caches = 1 WHERE (permissions & 64) != 0;
UPDATE user_groups SET can_administer = 1 WHERE permissions = 511;
ALTER TABLE user_groups DROP COLUMN permissions;
