-- Members of such a group are administrators.
ALTER TABLE user_groups ADD COLUMN can_administer BOOLEAN NOT NULL DEFAULT FALSE;
