DROP TABLE cli_logins;
ALTER TABLE caches DROP COLUMN allow_force_push;
DROP TABLE cache_upstreams;
