-- Single sign-on: people are matched to their account by the identity provider's subject
-- (`sub`, unique per issuer); and sign-ins under way live here, not in one process, so any
-- replica can finish a flow another started.
ALTER TABLE users ADD COLUMN oidc_subject TEXT;
CREATE UNIQUE INDEX users_oidc_subject ON users (oidc_subject);

CREATE TABLE oidc_flows (
    state TEXT PRIMARY KEY NOT NULL,
    nonce TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    next_path TEXT NOT NULL,
    -- SHA-256 of a secret kept in the browser that started the sign-in (a cookie): a
    -- callback URL sent to someone else cannot sign them in as the sender.
    browser_hash TEXT NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX oidc_flows_expires_at ON oidc_flows (expires_at);
