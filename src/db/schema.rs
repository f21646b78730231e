// Hand-written so that one schema serves SQLite and PostgreSQL (see migrations/).

diesel::table! {
    caches (id) {
        id -> BigInt,
        name -> Text,
        is_public -> Bool,
        priority -> Integer,
        created_at -> Timestamp,
        quota_bytes -> Nullable<BigInt>,
        allow_force_push -> Bool,
        quota_policy -> Text,
        retention_seconds -> Nullable<BigInt>,
    }
}

diesel::table! {
    cache_upstreams (id) {
        id -> BigInt,
        cache_id -> BigInt,
        url -> Text,
        public_key -> Text,
    }
}

diesel::table! {
    smtp_settings (id) {
        id -> BigInt,
        host -> Text,
        port -> Integer,
        security -> Text,
        username -> Nullable<Text>,
        password -> Nullable<Text>,
        from_address -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    user_links (id) {
        id -> BigInt,
        user_id -> BigInt,
        purpose -> Text,
        token_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    cli_logins (id) {
        id -> BigInt,
        code -> Text,
        poll_secret_hash -> Text,
        client_name -> Text,
        peer -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        approved_by -> Nullable<BigInt>,
        scope_cache_id -> Nullable<BigInt>,
        can_push -> Bool,
        token_expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    cache_keys (id) {
        id -> BigInt,
        cache_id -> BigInt,
        public_key -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    nars (id) {
        id -> BigInt,
        nar_hash -> Text,
        nar_size -> BigInt,
        compression -> Text,
        file_hash -> Text,
        file_size -> BigInt,
        storage_key -> Text,
        created_at -> Timestamp,
        unreferenced_since -> Nullable<Timestamp>,
    }
}

diesel::table! {
    store_paths (id) {
        id -> BigInt,
        cache_id -> BigInt,
        nar_id -> BigInt,
        hash_part -> Text,
        name -> Text,
        deriver -> Nullable<Text>,
        ca -> Nullable<Text>,
        signatures -> Text,
        created_at -> Timestamp,
        last_accessed_at -> Nullable<Timestamp>,
        access_count -> BigInt,
        commit_seq -> BigInt,
    }
}

diesel::table! {
    change_counters (name) {
        name -> Text,
        value -> BigInt,
    }
}

diesel::table! {
    replicas (id) {
        id -> Text,
        seen_seq -> BigInt,
        renewed_at -> Timestamp,
    }
}

diesel::table! {
    path_references (store_path_id, reference) {
        store_path_id -> BigInt,
        reference -> Text,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        name -> Text,
        is_admin -> Bool,
        password_hash -> Nullable<Text>,
        created_at -> Timestamp,
        email -> Nullable<Text>,
        login -> Text,
        oidc_subject -> Nullable<Text>,
        avatar -> Nullable<Binary>,
    }
}

diesel::table! {
    trust_rules (id) {
        id -> BigInt,
        cache_id -> BigInt,
        issuer -> Text,
        conditions -> Text,
        can_push -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    used_id_tokens (token_hash) {
        token_hash -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    sso_settings (id) {
        id -> BigInt,
        issuer_url -> Text,
        client_id -> Text,
        client_secret -> Text,
        scopes -> Text,
        groups_claim -> Nullable<Text>,
        create_users -> Bool,
        sso_only -> Bool,
        display_name -> Text,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    oidc_flows (state) {
        state -> Text,
        nonce -> Text,
        pkce_verifier -> Text,
        next_path -> Text,
        browser_hash -> Text,
        expires_at -> Timestamp,
    }
}

diesel::table! {
    cache_permissions (cache_id, user_id) {
        cache_id -> BigInt,
        user_id -> BigInt,
        can_push -> Bool,
        can_manage -> Bool,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        token_hash -> Text,
        expires_at -> Nullable<Timestamp>,
        revoked_at -> Nullable<Timestamp>,
        last_used_at -> Nullable<Timestamp>,
        created_at -> Timestamp,
        can_push -> Bool,
        cache_scoped -> Bool,
    }
}

diesel::table! {
    user_groups (id) {
        id -> BigInt,
        name -> Text,
        created_at -> Timestamp,
        permissions -> BigInt,
    }
}

diesel::table! {
    group_members (group_id, user_id) {
        group_id -> BigInt,
        user_id -> BigInt,
    }
}

diesel::table! {
    group_cache_permissions (cache_id, group_id) {
        cache_id -> BigInt,
        group_id -> BigInt,
        can_push -> Bool,
        can_manage -> Bool,
    }
}

diesel::table! {
    traffic_hourly (cache_id, hour) {
        cache_id -> BigInt,
        hour -> Timestamp,
        narinfo_hits -> BigInt,
        narinfo_misses -> BigInt,
        nar_bytes -> BigInt,
    }
}

diesel::table! {
    token_caches (token_id, cache_id) {
        token_id -> BigInt,
        cache_id -> BigInt,
    }
}

diesel::joinable!(cache_keys -> caches (cache_id));
diesel::joinable!(store_paths -> caches (cache_id));
diesel::joinable!(store_paths -> nars (nar_id));
diesel::joinable!(path_references -> store_paths (store_path_id));
diesel::joinable!(cache_permissions -> caches (cache_id));
diesel::joinable!(cache_permissions -> users (user_id));
diesel::joinable!(api_tokens -> users (user_id));

diesel::allow_tables_to_appear_in_same_query!(
    pins,
    trust_rules,
    reclaims,
    user_groups,
    group_members,
    group_cache_permissions,
    traffic_hourly,
    token_caches,
    sessions,
    sign_in_failures,
    pending_nars,
    build_logs,
    caches,
    cache_keys,
    nars,
    store_paths,
    path_references,
    users,
    cache_permissions,
    api_tokens,
    user_links,
    email_changes
);

diesel::table! {
    email_changes (user_id) {
        user_id -> BigInt,
        new_email -> Text,
        old_code_hash -> Nullable<Text>,
        new_code_hash -> Text,
        created_at -> Timestamp,
        expires_at -> Timestamp,
        failed_tries -> BigInt,
    }
}

diesel::joinable!(email_changes -> users (user_id));

diesel::table! {
    pending_nars (id) {
        id -> BigInt,
        cache_id -> BigInt,
        user_id -> BigInt,
        file_hash -> Text,
        compression -> Text,
        file_size -> BigInt,
        nar_hash -> Text,
        nar_size -> BigInt,
        storage_key -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    build_logs (id) {
        id -> BigInt,
        cache_id -> BigInt,
        drv -> Text,
        storage_key -> Text,
        content_encoding -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id) {
        id -> BigInt,
        token_hash -> Text,
        user_id -> BigInt,
        expires_at -> Timestamp,
        created_at -> Timestamp,
    }
}

diesel::table! {
    setup_codes (id) {
        id -> BigInt,
        code -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    sign_in_failures (id) {
        id -> BigInt,
        peer -> Text,
        at -> Timestamp,
        account -> Text,
    }
}

diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(user_links -> users (user_id));
diesel::joinable!(cache_upstreams -> caches (cache_id));
diesel::joinable!(group_members -> user_groups (group_id));
diesel::joinable!(group_members -> users (user_id));
diesel::joinable!(group_cache_permissions -> user_groups (group_id));
diesel::joinable!(token_caches -> api_tokens (token_id));
diesel::joinable!(token_caches -> caches (cache_id));
diesel::joinable!(pending_nars -> caches (cache_id));
diesel::joinable!(build_logs -> caches (cache_id));

diesel::table! {
    pins (id) {
        id -> BigInt,
        cache_id -> BigInt,
        name -> Text,
        store_path -> Text,
        created_at -> Timestamp,
        expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    reclaims (id) {
        id -> BigInt,
        cache_id -> Nullable<BigInt>,
        kind -> Text,
        at -> Timestamp,
        paths -> BigInt,
        bytes -> BigInt,
        objects -> BigInt,
    }
}

diesel::joinable!(pins -> caches (cache_id));
diesel::joinable!(trust_rules -> caches (cache_id));
