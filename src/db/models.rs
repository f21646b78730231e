//! Rows as the queries return them. They mirror whole tables, so some columns are only
//! read by later features (the dashboard).
#![allow(dead_code)]

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::schema::*;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = caches)]
pub struct Cache {
    pub id: i64,
    pub name: String,
    pub is_public: bool,
    pub priority: i32,
    pub created_at: NaiveDateTime,
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
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub is_admin: bool,
    pub password_hash: Option<String>,
    pub created_at: NaiveDateTime,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub token_hash: String,
    pub expires_at: Option<NaiveDateTime>,
    pub revoked_at: Option<NaiveDateTime>,
    pub last_used_at: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
}
