//! Single sign-on's rows: sign-ins under way (state, nonce, PKCE verifier, where to return),
//! and accounts matched by the identity provider's subject.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::ids::UserId;
use super::models::User;
use super::schema::{group_members, oidc_flows, sso_settings, user_groups, users};
use super::{AnyConnection, DbResult, now};

/// A sign-in sent to the identity provider and not back yet.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = oidc_flows)]
pub struct Flow {
    pub state: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub next_path: String,
    pub browser_hash: String,
    pub expires_at: NaiveDateTime,
}

pub fn insert_flow(conn: &mut AnyConnection, flow: &Flow) -> DbResult<()> {
    diesel::insert_into(oidc_flows::table)
        .values((
            oidc_flows::state.eq(&flow.state),
            oidc_flows::nonce.eq(&flow.nonce),
            oidc_flows::pkce_verifier.eq(&flow.pkce_verifier),
            oidc_flows::next_path.eq(&flow.next_path),
            oidc_flows::browser_hash.eq(&flow.browser_hash),
            oidc_flows::expires_at.eq(flow.expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Takes the flow with this state out of the table (each finishes once); expired ones are
/// deleted and not returned.
pub fn take_flow(conn: &mut AnyConnection, state: &str) -> DbResult<Option<Flow>> {
    let found = oidc_flows::table.find(state).select(Flow::as_select()).first(conn).optional()?;
    let taken = diesel::delete(oidc_flows::table.find(state)).execute(conn)?;
    Ok(found.filter(|flow| taken == 1 && flow.expires_at > now()))
}

/// Sign-ins under way (not expired).
pub fn count_open_flows(conn: &mut AnyConnection) -> DbResult<i64> {
    Ok(oidc_flows::table.filter(oidc_flows::expires_at.gt(now())).count().get_result(conn)?)
}

/// Deletes flows that were never finished.
pub fn delete_expired_flows(conn: &mut AnyConnection) -> DbResult<usize> {
    Ok(diesel::delete(oidc_flows::table.filter(oidc_flows::expires_at.le(now()))).execute(conn)?)
}

pub fn find_by_subject(conn: &mut AnyConnection, subject: &str) -> DbResult<Option<User>> {
    Ok(users::table.filter(users::oidc_subject.eq(subject)).select(User::as_select()).first(conn).optional()?)
}

pub fn set_subject(conn: &mut AnyConnection, UserId(user): UserId, subject: &str) -> DbResult<()> {
    diesel::update(users::table.find(user)).set(users::oidc_subject.eq(Some(subject))).execute(conn)?;
    Ok(())
}

/// The name and email address the identity provider has for the user now.
pub fn refresh_profile(
    conn: &mut AnyConnection,
    UserId(user): UserId,
    name: &str,
    email: Option<&str>,
) -> DbResult<()> {
    diesel::update(users::table.find(user)).set(users::name.eq(name)).execute(conn)?;
    if let Some(email) = email {
        diesel::update(users::table.find(user)).set(users::email.eq(Some(email))).execute(conn)?;
    }
    Ok(())
}

/// Makes the user a member of exactly the local groups named in `names` (groups the server
/// does not have are ignored); returns whether anything changed.
pub fn sync_memberships(conn: &mut AnyConnection, UserId(user): UserId, names: &[String]) -> DbResult<bool> {
    let wanted: Vec<i64> =
        user_groups::table.filter(user_groups::name.eq_any(names)).select(user_groups::id).load(conn)?;
    let current: Vec<i64> =
        group_members::table.filter(group_members::user_id.eq(user)).select(group_members::group_id).load(conn)?;
    let removed: Vec<i64> = current.iter().copied().filter(|g| !wanted.contains(g)).collect();
    let added: Vec<i64> = wanted.iter().copied().filter(|g| !current.contains(g)).collect();
    if !removed.is_empty() {
        diesel::delete(
            group_members::table
                .filter(group_members::user_id.eq(user))
                .filter(group_members::group_id.eq_any(&removed)),
        )
        .execute(conn)?;
    }
    for group in &added {
        diesel::insert_into(group_members::table)
            .values((group_members::group_id.eq(group), group_members::user_id.eq(user)))
            .execute(conn)?;
    }
    Ok(!removed.is_empty() || !added.is_empty())
}

/// Single sign-on settings saved on the settings page.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = sso_settings)]
pub struct StoredSso {
    pub issuer_url: String,
    pub client_id: String,
    pub client_secret: String,
    pub scopes: String,
    pub groups_claim: Option<String>,
    pub create_users: bool,
    pub sso_only: bool,
    pub display_name: String,
}

pub fn sso_settings(conn: &mut AnyConnection) -> DbResult<Option<StoredSso>> {
    Ok(sso_settings::table.find(1i64).select(StoredSso::as_select()).first(conn).optional()?)
}

pub fn save_sso_settings(conn: &mut AnyConnection, settings: &StoredSso) -> DbResult<()> {
    diesel::delete(sso_settings::table).execute(conn)?;
    diesel::insert_into(sso_settings::table)
        .values((
            sso_settings::id.eq(1i64),
            sso_settings::issuer_url.eq(&settings.issuer_url),
            sso_settings::client_id.eq(&settings.client_id),
            sso_settings::client_secret.eq(&settings.client_secret),
            sso_settings::scopes.eq(&settings.scopes),
            sso_settings::groups_claim.eq(&settings.groups_claim),
            sso_settings::create_users.eq(settings.create_users),
            sso_settings::sso_only.eq(settings.sso_only),
            sso_settings::display_name.eq(&settings.display_name),
            sso_settings::updated_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Removes the saved settings (single sign-on off unless OIDC_* variables set it).
pub fn delete_sso_settings(conn: &mut AnyConnection) -> DbResult<bool> {
    Ok(diesel::delete(sso_settings::table).execute(conn)? > 0)
}
