DROP TABLE sso_settings;
