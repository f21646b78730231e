-- Maximum bytes of stored NAR files a cache may hold; NULL means no limit.
ALTER TABLE caches ADD COLUMN quota_bytes BIGINT;
