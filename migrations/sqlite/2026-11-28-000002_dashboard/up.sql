ALTER TABLE users ADD COLUMN email TEXT;
CREATE UNIQUE INDEX users_email ON users (email);

-- Browser sessions; the cookie holds a random secret, the table its SHA-256.
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at TIMESTAMP NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX sessions_user ON sessions (user_id);

-- Failed sign-ins per peer address, for rate limiting across server processes.
CREATE TABLE sign_in_failures (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    peer TEXT NOT NULL,
    at TIMESTAMP NOT NULL
);
CREATE INDEX sign_in_failures_peer ON sign_in_failures (peer, at);
