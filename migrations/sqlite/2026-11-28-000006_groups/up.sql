-- Groups of users: they hold global permissions and per-cache grants for all their members.
CREATE TABLE user_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    name TEXT NOT NULL UNIQUE,
    can_create_caches BOOLEAN NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE group_members (
    group_id BIGINT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

CREATE TABLE group_cache_permissions (
    cache_id BIGINT NOT NULL REFERENCES caches(id) ON DELETE CASCADE,
    group_id BIGINT NOT NULL REFERENCES user_groups(id) ON DELETE CASCADE,
    can_push BOOLEAN NOT NULL DEFAULT 0,
    PRIMARY KEY (cache_id, group_id)
);
CREATE INDEX group_cache_permissions_group ON group_cache_permissions (group_id);
