-- A change of one's email address waiting for its two codes: one mailed to the old address,
-- one to the new. Only SHA-256 hashes of the codes are stored; wrong tries are counted.
CREATE TABLE email_changes (
    user_id BIGINT PRIMARY KEY NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    new_email TEXT NOT NULL,
    old_code_hash TEXT,
    new_code_hash TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    failed_tries BIGINT NOT NULL DEFAULT 0
);
-- A small square PNG the server made from what the user uploaded.
ALTER TABLE users ADD COLUMN avatar BLOB;
