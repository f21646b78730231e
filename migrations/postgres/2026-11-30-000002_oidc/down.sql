DROP TABLE oidc_flows;
DROP INDEX users_oidc_subject;
ALTER TABLE users DROP COLUMN oidc_subject;
