-- Mail settings chosen in the dashboard (one row); SMTP_* environment variables win over it.
CREATE TABLE smtp_settings (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    host TEXT NOT NULL,
    port INTEGER NOT NULL,
    security TEXT NOT NULL,
    username TEXT,
    password TEXT,
    from_address TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Single-use links mailed to people: invitations and password resets. Only the SHA-256 of
-- the secret in the link is stored.
CREATE TABLE user_links (
    id BIGSERIAL PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    purpose TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX user_links_user ON user_links (user_id);
