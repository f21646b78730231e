ALTER TABLE user_groups DROP COLUMN can_administer;
