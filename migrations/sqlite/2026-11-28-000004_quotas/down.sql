ALTER TABLE caches DROP COLUMN quota_bytes;
