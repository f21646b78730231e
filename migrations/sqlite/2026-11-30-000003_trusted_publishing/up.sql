-- Trusted publishing: a cache trusts ID tokens from an issuer (e.g. GitHub Actions) whose
-- claims match its conditions, and grants them push or read for a short-lived API token.
CREATE TABLE trust_rules (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    issuer TEXT NOT NULL,
    -- A JSON object: claim name -> the value it must have.
    conditions TEXT NOT NULL,
    can_push BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL
);
CREATE INDEX trust_rules_issuer ON trust_rules (issuer);
CREATE INDEX trust_rules_cache ON trust_rules (cache_id);

-- Each ID token is exchanged once: its hash is kept until it expires.
CREATE TABLE used_id_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX used_id_tokens_expires_at ON used_id_tokens (expires_at);
