DROP TABLE sign_in_failures;
DROP TABLE sessions;
DROP INDEX users_email;
ALTER TABLE users DROP COLUMN email;
