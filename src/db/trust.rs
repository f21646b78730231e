//! Trusted publishing's rows: which ID tokens each cache trusts, and the hashes of the ID
//! tokens already exchanged (each works once).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::ids::{CacheId, UserId};
use super::models::GrantLevel;
use super::schema::{caches, trust_rules, used_id_tokens};
use super::{AnyConnection, DbResult, now, users};

/// The login of the account that tokens from trusted publishing belong to. It holds, on
/// each cache, the strongest right that cache's rules give; each token is narrowed further.
pub const SYSTEM_LOGIN: &str = "trusted-publishing";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = trust_rules)]
pub struct TrustRule {
    pub id: i64,
    pub cache_id: i64,
    pub issuer: String,
    /// A JSON object: claim name -> required value.
    pub conditions: String,
    pub can_push: bool,
}

pub fn add_rule(
    conn: &mut AnyConnection,
    CacheId(cache): CacheId,
    issuer: &str,
    conditions: &str,
    can_push: bool,
) -> DbResult<()> {
    diesel::insert_into(trust_rules::table)
        .values((
            trust_rules::cache_id.eq(cache),
            trust_rules::issuer.eq(issuer),
            trust_rules::conditions.eq(conditions),
            trust_rules::can_push.eq(can_push),
            trust_rules::created_at.eq(now()),
        ))
        .execute(conn)?;
    sync_system_grant(conn, CacheId(cache))
}

/// Removes one of the cache's rules; false when it has no such rule.
pub fn remove_rule(conn: &mut AnyConnection, CacheId(cache): CacheId, rule: i64) -> DbResult<bool> {
    let removed =
        diesel::delete(trust_rules::table.filter(trust_rules::id.eq(rule)).filter(trust_rules::cache_id.eq(cache)))
            .execute(conn)?;
    sync_system_grant(conn, CacheId(cache))?;
    Ok(removed == 1)
}

pub fn rules_of(conn: &mut AnyConnection, CacheId(cache): CacheId) -> DbResult<Vec<TrustRule>> {
    Ok(trust_rules::table
        .filter(trust_rules::cache_id.eq(cache))
        .order(trust_rules::id)
        .select(TrustRule::as_select())
        .load(conn)?)
}

/// The rules that trust `issuer`, with their cache's name.
pub fn rules_for_issuer(conn: &mut AnyConnection, issuer: &str) -> DbResult<Vec<(TrustRule, String)>> {
    Ok(trust_rules::table
        .inner_join(caches::table)
        .filter(trust_rules::issuer.eq(issuer))
        .order(trust_rules::id)
        .select((TrustRule::as_select(), caches::name))
        .load(conn)?)
}

/// Whether any cache trusts `issuer` (so that only issuers someone configured are ever
/// asked for their keys).
pub fn issuer_is_trusted(conn: &mut AnyConnection, issuer: &str) -> DbResult<bool> {
    Ok(trust_rules::table
        .filter(trust_rules::issuer.eq(issuer))
        .select(trust_rules::id)
        .first::<i64>(conn)
        .optional()?
        .is_some())
}

/// Records an exchanged ID token; a unique violation means it was exchanged before.
pub fn record_used(conn: &mut AnyConnection, token_hash: &str, expires_at: NaiveDateTime) -> DbResult<()> {
    diesel::insert_into(used_id_tokens::table)
        .values((used_id_tokens::token_hash.eq(token_hash), used_id_tokens::expires_at.eq(expires_at)))
        .execute(conn)?;
    Ok(())
}

pub fn delete_expired_used(conn: &mut AnyConnection) -> DbResult<usize> {
    Ok(diesel::delete(used_id_tokens::table.filter(used_id_tokens::expires_at.lt(now()))).execute(conn)?)
}

/// The account trusted publishing's tokens belong to, made on first use.
pub fn system_user(conn: &mut AnyConnection) -> DbResult<UserId> {
    if let Some(user) = users::find_by_login(conn, SYSTEM_LOGIN)? {
        return Ok(user.id);
    }
    Ok(users::create(conn, SYSTEM_LOGIN, "Trusted publishing (CI)", false)?.id)
}

/// Gives the system account, on this cache, the strongest right the cache's rules give
/// (none without rules).
fn sync_system_grant(conn: &mut AnyConnection, cache: CacheId) -> DbResult<()> {
    let user = system_user(conn)?;
    let rules = rules_of(conn, cache)?;
    match rules.iter().map(|r| if r.can_push { GrantLevel::Push } else { GrantLevel::Read }).max() {
        Some(level) => users::grant(conn, cache, user, level),
        None => users::revoke_grant(conn, cache, user),
    }
}
