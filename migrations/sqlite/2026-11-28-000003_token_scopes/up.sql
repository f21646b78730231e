-- What a token may do: push (or only read), in the listed caches (or in all of its user's).
ALTER TABLE api_tokens ADD COLUMN can_push BOOLEAN NOT NULL DEFAULT 1;

CREATE TABLE token_caches (
    token_id BIGINT NOT NULL REFERENCES api_tokens(id) ON DELETE CASCADE,
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    PRIMARY KEY (token_id, cache_id)
);
