ALTER TABLE user_groups ADD COLUMN can_create_caches BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE user_groups ADD COLUMN can_administer BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE user_groups SET can_create_caches = TRUE WHERE (permissions & 64) != 0;
UPDATE user_groups SET can_administer = TRUE WHERE permissions = 511;
ALTER TABLE user_groups DROP COLUMN permissions;
