//! Rows as the queries return them. They mirror whole tables, so some columns are only
//! read by later features (the dashboard).
#![allow(dead_code)]

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::permissions::{Permission, Permissions};
use super::schema::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = caches)]
pub struct Cache {
    pub id: i64,
    pub name: String,
    pub is_public: bool,
    pub priority: i32,
    pub created_at: NaiveDateTime,
    pub quota_bytes: Option<i64>,
    pub allow_force_push: bool,
    /// A [`QuotaPolicy`] name.
    pub quota_policy: String,
    /// Paths unused for longer than this are removed (with the closure rule); none when NULL.
    pub retention_seconds: Option<i64>,
}

impl Cache {
    pub fn policy(&self) -> QuotaPolicy {
        QuotaPolicy::parse(&self.quota_policy).unwrap_or(QuotaPolicy::Refuse)
    }
}

/// What a push that would take a cache over its quota does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaPolicy {
    /// Refuse the push (413) until someone makes room.
    Refuse,
    /// Evict the paths downloaded longest ago (never downloaded: pushed longest ago) first.
    Lru,
    /// Evict the paths downloaded fewest times first (ties: longest unused first).
    Lfu,
    /// Evict the paths pushed longest ago first.
    Oldest,
}

impl QuotaPolicy {
    pub const ALL: [QuotaPolicy; 4] = [Self::Refuse, Self::Lru, Self::Lfu, Self::Oldest];

    pub fn name(self) -> &'static str {
        match self {
            Self::Refuse => "refuse",
            Self::Lru => "lru",
            Self::Lfu => "lfu",
            Self::Oldest => "oldest",
        }
    }

    /// For the settings form.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Refuse => "refuse the push (413)",
            Self::Lru => "evict the least recently used paths",
            Self::Lfu => "evict the least frequently used paths",
            Self::Oldest => "evict the oldest paths",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == text)
    }

    pub fn evicts(self) -> bool {
        self != Self::Refuse
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = nars)]
pub struct Nar {
    pub id: i64,
    pub nar_hash: String,
    pub nar_size: i64,
    pub compression: String,
    pub file_hash: String,
    pub file_size: i64,
    pub storage_key: String,
    pub created_at: NaiveDateTime,
    pub unreferenced_since: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = nars)]
pub struct NewNar {
    pub nar_hash: String,
    pub nar_size: i64,
    pub compression: String,
    pub file_hash: String,
    pub file_size: i64,
    pub storage_key: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = store_paths)]
pub struct StorePathRow {
    pub id: i64,
    pub cache_id: i64,
    pub nar_id: i64,
    pub hash_part: String,
    pub name: String,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    /// `Sig:` values, one per line.
    pub signatures: String,
    pub created_at: NaiveDateTime,
    pub last_accessed_at: Option<NaiveDateTime>,
    pub access_count: i64,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = store_paths)]
pub struct NewStorePath {
    pub cache_id: i64,
    pub nar_id: i64,
    pub hash_part: String,
    pub name: String,
    pub deriver: Option<String>,
    pub ca: Option<String>,
    pub signatures: String,
    pub created_at: NaiveDateTime,
    pub access_count: i64,
    /// Where this path's commit is in the order replicas read them (see `db::replication`).
    pub commit_seq: i64,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: super::ids::UserId,
    /// The display name, which its owner may change.
    pub name: String,
    /// All of them for an administrator by their own flag (`users.is_admin`); what their
    /// groups give is added by `users::with_group_rights`.
    #[diesel(column_name = is_admin, deserialize_as = bool)]
    pub permissions: Permissions,
    pub password_hash: Option<String>,
    pub created_at: NaiveDateTime,
    pub email: Option<String>,
    /// Unique and never changed: how administrators and grant forms name the user.
    pub login: String,
    /// Whether they uploaded an avatar (the image itself is only read when it is served).
    #[diesel(select_expression = users::avatar.is_not_null())]
    #[diesel(select_expression_type = diesel::dsl::IsNotNull<users::avatar>)]
    pub has_avatar: bool,
}

/// How lists show a person: the name with the login ("Ada (ada@example.com)").
pub fn user_label(name: &str, login: &str) -> String {
    format!("{name} ({login})")
}

impl User {
    /// The name with the login, as lists show people ("Ada (ada@example.com)").
    pub fn label(&self) -> String {
        user_label(&self.name, &self.login)
    }

    /// Holds every permission.
    pub fn is_admin(&self) -> bool {
        self.permissions.is_all()
    }

    pub fn holds(&self, permission: Permission) -> bool {
        self.permissions.holds(permission)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: super::ids::TokenId,
    pub user_id: super::ids::UserId,
    pub name: String,
    pub token_hash: String,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub can_push: bool,
    /// Limited to the caches in `token_caches` (none left means no access at all).
    pub cache_scoped: bool,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = pending_nars)]
pub struct PendingNar {
    #[diesel(skip_insertion)]
    pub id: i64,
    pub cache_id: i64,
    pub user_id: super::ids::UserId,
    pub file_hash: String,
    pub compression: String,
    pub file_size: i64,
    pub nar_hash: String,
    pub nar_size: i64,
    pub storage_key: String,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = build_logs)]
pub struct BuildLog {
    pub id: i64,
    pub cache_id: i64,
    pub drv: String,
    pub storage_key: String,
    pub content_encoding: Option<String>,
    pub created_at: NaiveDateTime,
}

impl From<PendingNar> for NewNar {
    fn from(p: PendingNar) -> Self {
        Self {
            nar_hash: p.nar_hash,
            nar_size: p.nar_size,
            compression: p.compression,
            file_hash: p.file_hash,
            file_size: p.file_size,
            storage_key: p.storage_key,
            created_at: super::now(),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cli_logins)]
pub struct CliLogin {
    pub id: i64,
    pub code: String,
    pub poll_secret_hash: String,
    pub client_name: String,
    pub peer: String,
    pub created_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub approved_by: Option<i64>,
    pub scope_cache_id: Option<i64>,
    pub can_push: bool,
    pub token_expires_at: Option<NaiveDateTime>,
}

/// What a grant on a cache allows; each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum GrantLevel {
    /// Substitute from the cache.
    Read,
    /// Read, and push paths.
    Push,
    /// Push, and change settings, grants, delete paths, clear and delete the cache.
    Manage,
}

impl GrantLevel {
    pub const ALL: [Self; 3] = [Self::Read, Self::Push, Self::Manage];

    /// From the `can_push` and `can_manage` columns.
    pub fn from_columns(can_push: bool, can_manage: bool) -> Self {
        match (can_push, can_manage) {
            (_, true) => Self::Manage,
            (true, false) => Self::Push,
            (false, false) => Self::Read,
        }
    }

    /// The `can_push` and `can_manage` columns.
    pub fn columns(self) -> (bool, bool) {
        (self >= Self::Push, self == Self::Manage)
    }

    /// The form and command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Push => "push",
            Self::Manage => "manage",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|level| level.name() == name)
    }

    /// What the level allows, as the grant form and tables say it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Read => "read: substitute from the cache",
            Self::Push => "push: read, and push paths",
            Self::Manage => "manage: push, and change settings and access, delete paths, clear or delete the cache",
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = pins)]
pub struct Pin {
    pub id: i64,
    pub cache_id: i64,
    pub name: String,
    /// The pinned path's base name (`<hash>-<name>`).
    pub store_path: String,
    pub created_at: NaiveDateTime,
    pub expires_at: Option<NaiveDateTime>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = reclaims)]
pub struct Reclaim {
    pub id: i64,
    pub cache_id: Option<i64>,
    pub kind: String,
    pub at: NaiveDateTime,
    pub paths: i64,
    pub bytes: i64,
    pub objects: i64,
}
