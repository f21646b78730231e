//! Groups: members, the global permissions they give, and per-cache grants.

use std::collections::HashMap;

use super::ids::{CacheId, GroupId, UserId};
use super::models::User;
use super::permissions::Permissions;
use diesel::prelude::*;

use super::models::GrantLevel;
use super::schema::{group_cache_permissions, group_members, user_groups, users};
use super::{AnyConnection, DbResult, now};

#[derive(Debug, Clone, Queryable)]
pub struct Group {
    pub id: super::ids::GroupId,
    pub name: String,
    #[diesel(deserialize_as = i64)]
    pub permissions: Permissions,
}

pub fn create(conn: &mut AnyConnection, name: &str, permissions: Permissions) -> DbResult<()> {
    diesel::insert_into(user_groups::table)
        .values((
            user_groups::name.eq(name),
            user_groups::permissions.eq(permissions.bits()),
            user_groups::created_at.eq(now()),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_permissions(conn: &mut AnyConnection, GroupId(group_id): GroupId, permissions: Permissions) -> DbResult<()> {
    diesel::update(user_groups::table.find(group_id))
        .set(user_groups::permissions.eq(permissions.bits()))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut AnyConnection, GroupId(group_id): GroupId) -> DbResult<Option<Group>> {
    Ok(user_groups::table
        .find(group_id)
        .select((user_groups::id, user_groups::name, user_groups::permissions))
        .first(conn)
        .optional()?)
}

/// What the user's groups give them: the union of their permissions.
pub fn permissions_of(conn: &mut AnyConnection, UserId(user_id): UserId) -> DbResult<Permissions> {
    let held: Vec<i64> = group_members::table
        .inner_join(user_groups::table)
        .filter(group_members::user_id.eq(user_id))
        .select(user_groups::permissions)
        .load(conn)?;
    Ok(held.into_iter().map(Permissions::from).fold(Permissions::NONE, Permissions::union))
}

/// How many users are administrators (hold every permission, by their own flag or through
/// their groups) and can act as themselves.
pub fn administrator_count(conn: &mut AnyConnection) -> DbResult<usize> {
    let mut held: HashMap<i64, Permissions> = users::table
        .filter(users::is_admin.eq(true))
        .select(users::id)
        .load::<i64>(conn)?
        .into_iter()
        .map(|id| (id, Permissions::ALL))
        .collect();
    let memberships: Vec<(i64, i64)> = group_members::table
        .inner_join(user_groups::table)
        .select((group_members::user_id, user_groups::permissions))
        .load(conn)?;
    for (user, bits) in memberships {
        let entry = held.entry(user).or_default();
        *entry = entry.union(Permissions::from(bits));
    }
    // Someone invited by mail who has not chosen a password yet cannot act as anyone.
    let pending: Vec<i64> = super::schema::user_links::table
        .inner_join(users::table)
        .filter(super::schema::user_links::purpose.eq("invite"))
        .filter(users::password_hash.is_null())
        .select(users::id)
        .load(conn)?;
    Ok(held.iter().filter(|(id, set)| set.is_all() && !pending.contains(id)).count())
}

pub fn list(conn: &mut AnyConnection) -> DbResult<Vec<Group>> {
    Ok(user_groups::table
        .order(user_groups::name)
        .select((user_groups::id, user_groups::name, user_groups::permissions))
        .load(conn)?)
}

pub fn delete(conn: &mut AnyConnection, group_id: i64) -> DbResult<()> {
    diesel::delete(user_groups::table.find(group_id)).execute(conn)?;
    Ok(())
}

/// The members of a group, by login.
pub fn members(conn: &mut AnyConnection, group: GroupId) -> DbResult<Vec<User>> {
    Ok(group_members::table
        .inner_join(users::table)
        .filter(group_members::group_id.eq(group))
        .order(users::login)
        .select(User::as_select())
        .load(conn)?)
}

pub fn add_member(conn: &mut AnyConnection, GroupId(group_id): GroupId, UserId(user_id): UserId) -> DbResult<()> {
    diesel::delete(group_members::table.find((group_id, user_id))).execute(conn)?;
    diesel::insert_into(group_members::table)
        .values((group_members::group_id.eq(group_id), group_members::user_id.eq(user_id)))
        .execute(conn)?;
    Ok(())
}

pub fn remove_member(conn: &mut AnyConnection, GroupId(group_id): GroupId, UserId(user_id): UserId) -> DbResult<()> {
    diesel::delete(group_members::table.find((group_id, user_id))).execute(conn)?;
    Ok(())
}

fn group_ids_of(conn: &mut AnyConnection, user_id: UserId) -> DbResult<Vec<i64>> {
    Ok(group_members::table.filter(group_members::user_id.eq(user_id)).select(group_members::group_id).load(conn)?)
}

/// The strongest grant the user's groups hold on a cache, if any.
pub fn permission_via_groups(
    conn: &mut AnyConnection,
    CacheId(cache_id): CacheId,
    UserId(user_id): UserId,
) -> DbResult<Option<GrantLevel>> {
    let ids = group_ids_of(conn, UserId(user_id))?;
    let grants: Vec<(bool, bool)> = group_cache_permissions::table
        .filter(group_cache_permissions::cache_id.eq(cache_id))
        .filter(group_cache_permissions::group_id.eq_any(ids))
        .select((group_cache_permissions::can_push, group_cache_permissions::can_manage))
        .load(conn)?;
    Ok(grants.into_iter().map(|(push, manage)| GrantLevel::from_columns(push, manage)).max())
}

/// Caches any of the user's groups was granted.
pub fn cache_ids_via_groups(conn: &mut AnyConnection, user_id: UserId) -> DbResult<Vec<i64>> {
    let ids = group_ids_of(conn, user_id)?;
    Ok(group_cache_permissions::table
        .filter(group_cache_permissions::group_id.eq_any(ids))
        .select(group_cache_permissions::cache_id)
        .load(conn)?)
}

pub fn grant(
    conn: &mut AnyConnection,
    CacheId(cache_id): CacheId,
    GroupId(group_id): GroupId,
    level: GrantLevel,
) -> DbResult<()> {
    let (can_push, can_manage) = level.columns();
    diesel::delete(group_cache_permissions::table.find((cache_id, group_id))).execute(conn)?;
    diesel::insert_into(group_cache_permissions::table)
        .values((
            group_cache_permissions::cache_id.eq(cache_id),
            group_cache_permissions::group_id.eq(group_id),
            group_cache_permissions::can_push.eq(can_push),
            group_cache_permissions::can_manage.eq(can_manage),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn revoke(conn: &mut AnyConnection, CacheId(cache_id): CacheId, GroupId(group_id): GroupId) -> DbResult<()> {
    diesel::delete(group_cache_permissions::table.find((cache_id, group_id))).execute(conn)?;
    Ok(())
}

/// A group's grants: (cache id, level).
pub fn grants_of_group(conn: &mut AnyConnection, GroupId(group_id): GroupId) -> DbResult<Vec<(i64, GrantLevel)>> {
    let rows: Vec<(i64, bool, bool)> = group_cache_permissions::table
        .filter(group_cache_permissions::group_id.eq(group_id))
        .select((
            group_cache_permissions::cache_id,
            group_cache_permissions::can_push,
            group_cache_permissions::can_manage,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(|(id, push, manage)| (id, GrantLevel::from_columns(push, manage))).collect())
}

/// Grants on a cache: (group id, group name, can push).
pub fn grants_on(conn: &mut AnyConnection, cache_id: i64) -> DbResult<Vec<(GroupId, String, GrantLevel)>> {
    let rows: Vec<(GroupId, String, bool, bool)> = group_cache_permissions::table
        .inner_join(user_groups::table)
        .filter(group_cache_permissions::cache_id.eq(cache_id))
        .order(user_groups::name)
        .select((
            user_groups::id,
            user_groups::name,
            group_cache_permissions::can_push,
            group_cache_permissions::can_manage,
        ))
        .load(conn)?;
    Ok(rows.into_iter().map(|(id, name, push, manage)| (id, name, GrantLevel::from_columns(push, manage))).collect())
}

/// Makes this transaction wait for any other that changes who holds what (on PostgreSQL,
/// with the advisory lock first-run setup takes too; SQLite runs one writer at a time
/// anyway): a check of rights made in it stays true until it commits. Re-entrant.
pub fn take_turns_with_rights_changes(conn: &mut AnyConnection) -> DbResult<()> {
    if let AnyConnection::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(7305553001)").execute(pg)?;
    }
    Ok(())
}

/// Runs `change`, then undoes it (by failing the transaction with
/// `RollbackTransaction`) if it left no administrator at all. Such changes take turns
/// ([`take_turns_with_rights_changes`]): two administrators removing each other at once
/// must not both see the other remain.
pub fn keeping_an_administrator<T>(
    conn: &mut AnyConnection,
    change: impl FnOnce(&mut AnyConnection) -> DbResult<T>,
) -> DbResult<T> {
    take_turns_with_rights_changes(conn)?;
    let result = change(conn)?;
    if administrator_count(conn)? == 0 {
        return Err(diesel::result::Error::RollbackTransaction.into());
    }
    Ok(result)
}
