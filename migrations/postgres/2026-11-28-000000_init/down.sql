DROP TABLE api_tokens;
DROP TABLE cache_permissions;
DROP TABLE users;
DROP TABLE path_references;
DROP TABLE store_paths;
DROP TABLE nars;
DROP TABLE cache_keys;
DROP TABLE caches;
