-- Single sign-on settings entered on the settings page (OIDC_* variables override them and
-- lock the form). One row, id 1.
CREATE TABLE sso_settings (
    id BIGINT PRIMARY KEY NOT NULL,
    issuer_url TEXT NOT NULL,
    client_id TEXT NOT NULL,
    client_secret TEXT NOT NULL,
    scopes TEXT NOT NULL,
    groups_claim TEXT,
    create_users BOOLEAN NOT NULL,
    sso_only BOOLEAN NOT NULL,
    display_name TEXT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
