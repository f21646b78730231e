DROP TABLE user_links;
DROP TABLE smtp_settings;
