//! Mail settings chosen in the dashboard, and the single-use links mailed to people.

use super::ids::UserId;
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::User;
use super::schema::{smtp_settings, user_links, users};
use super::{AnyConnection, DbResult, now};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = smtp_settings)]
pub struct StoredSmtp {
    pub id: i64,
    pub host: String,
    pub port: i32,
    pub security: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from_address: String,
    pub updated_at: NaiveDateTime,
}

pub fn smtp(conn: &mut AnyConnection) -> DbResult<Option<StoredSmtp>> {
    Ok(smtp_settings::table.find(1i64).select(StoredSmtp::as_select()).first(conn).optional()?)
}

pub fn save_smtp(conn: &mut AnyConnection, settings: &StoredSmtp) -> DbResult<()> {
    diesel::delete(smtp_settings::table).execute(conn)?;
    diesel::insert_into(smtp_settings::table)
        .values((
            smtp_settings::id.eq(1i64),
            smtp_settings::host.eq(&settings.host),
            smtp_settings::port.eq(settings.port),
            smtp_settings::security.eq(&settings.security),
            smtp_settings::username.eq(&settings.username),
            smtp_settings::password.eq(&settings.password),
            smtp_settings::from_address.eq(&settings.from_address),
            smtp_settings::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// What a mailed link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    Invite,
    Reset,
}

impl LinkPurpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Invite => "invite",
            Self::Reset => "reset",
        }
    }
}

pub fn create_link(
    conn: &mut AnyConnection,
    user_id: UserId,
    purpose: LinkPurpose,
    token_hash: &str,
    expires_at: NaiveDateTime,
) -> DbResult<()> {
    diesel::insert_into(user_links::table)
        .values((
            user_links::user_id.eq(user_id),
            user_links::purpose.eq(purpose.as_str()),
            user_links::token_hash.eq(token_hash),
            user_links::created_at.eq(now()),
            user_links::expires_at.eq(expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// The user an unused, unexpired link of `purpose` belongs to, with the link's id.
pub fn find_link(conn: &mut AnyConnection, purpose: LinkPurpose, token_hash: &str) -> DbResult<Option<(i64, User)>> {
    Ok(user_links::table
        .inner_join(users::table)
        .filter(user_links::token_hash.eq(token_hash))
        .filter(user_links::purpose.eq(purpose.as_str()))
        .filter(user_links::used_at.is_null())
        .filter(user_links::expires_at.gt(now()))
        .select((user_links::id, User::as_select()))
        .first(conn)
        .optional()?)
}

/// Marks a link used; false when it was used already (a concurrent request won).
pub fn use_link(conn: &mut AnyConnection, link_id: i64) -> DbResult<bool> {
    let changed = diesel::update(user_links::table.find(link_id).filter(user_links::used_at.is_null()))
        .set(user_links::used_at.eq(Some(now())))
        .execute(conn)?;
    Ok(changed == 1)
}

/// Earlier unused links of the same purpose stop working when a new one is sent.
pub fn retire_links(conn: &mut AnyConnection, user_id: UserId, purpose: LinkPurpose) -> DbResult<()> {
    diesel::update(
        user_links::table
            .filter(user_links::user_id.eq(user_id))
            .filter(user_links::purpose.eq(purpose.as_str()))
            .filter(user_links::used_at.is_null()),
    )
    .set(user_links::used_at.eq(Some(now())))
    .execute(conn)?;
    Ok(())
}
