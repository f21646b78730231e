ALTER TABLE users DROP COLUMN avatar;
DROP TABLE email_changes;
