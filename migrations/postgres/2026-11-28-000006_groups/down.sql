DROP TABLE group_cache_permissions;
DROP TABLE group_members;
DROP TABLE user_groups;
