//! Users, per-cache permissions and API tokens.

use super::ids::{CacheId, TokenId, UserId};
use chrono::NaiveDateTime;
use diesel::prelude::*;

use super::models::GrantLevel;
use super::models::{ApiToken, User};
use super::schema::{api_tokens, cache_permissions, token_caches, users};
use super::{AnyConnection, DbResult, now};

/// Creates a user known by `login` (unique, never changed) and shown as `name`.
pub fn create(conn: &mut AnyConnection, login: &str, name: &str, is_admin: bool) -> DbResult<User> {
    diesel::insert_into(users::table)
        .values((
            users::login.eq(login),
            users::name.eq(name),
            users::is_admin.eq(is_admin),
            users::created_at.eq(now()),
        ))
        .execute(conn)?;
    find_by_login(conn, login)?.ok_or(diesel::result::Error::NotFound.into())
}

/// The new user's identity: the login others name them by, and how they are shown.
pub struct NewIdentity<'a> {
    pub login: &'a str,
    pub name: &'a str,
}

/// Creates a user who signs in to the dashboard with an email address and password.
pub fn create_with_password(
    conn: &mut AnyConnection,
    who: NewIdentity<'_>,
    email: &str,
    password_hash: &str,
    is_admin: bool,
) -> DbResult<User> {
    create_with_email(conn, who, email, Some(password_hash), is_admin)
}

/// A user invited by mail (their login is the email): no password until they follow the
/// invitation.
pub fn create_invited(conn: &mut AnyConnection, name: &str, email: &str, is_admin: bool) -> DbResult<User> {
    create_with_email(conn, NewIdentity { login: email, name }, email, None, is_admin)
}

/// A user who signs in through the identity provider only (no password).
pub fn create_sso(conn: &mut AnyConnection, who: NewIdentity<'_>, email: &str) -> DbResult<User> {
    create_with_email(conn, who, email, None, false)
}

fn create_with_email(
    conn: &mut AnyConnection,
    who: NewIdentity<'_>,
    email: &str,
    password_hash: Option<&str>,
    is_admin: bool,
) -> DbResult<User> {
    // A login taken from an address may be held by someone who changed their address since
    // (logins never change): the newcomer gets the first free `<address>-<n>`.
    let login = if who.login == email { free_login(conn, who.login)? } else { who.login.to_string() };
    diesel::insert_into(users::table)
        .values((
            users::login.eq(&login),
            users::name.eq(who.name),
            users::email.eq(email),
            users::password_hash.eq(password_hash),
            users::is_admin.eq(is_admin),
            users::created_at.eq(now()),
        ))
        .execute(conn)?;
    find_by_login(conn, &login)?.ok_or(diesel::result::Error::NotFound.into())
}

/// `wanted`, or `wanted-2`, `wanted-3`... whichever no user has.
fn free_login(conn: &mut AnyConnection, wanted: &str) -> DbResult<String> {
    let mut candidate = wanted.to_string();
    for n in 2.. {
        if find_by_login(conn, &candidate)?.is_none() {
            break;
        }
        candidate = format!("{wanted}-{n}");
    }
    Ok(candidate)
}

pub fn set_password(conn: &mut AnyConnection, user_id: UserId, password_hash: &str) -> DbResult<()> {
    diesel::update(users::table.find(user_id)).set(users::password_hash.eq(Some(password_hash))).execute(conn)?;
    Ok(())
}

/// Changes a user's display name and, when given, password hash.
pub fn update_account(
    conn: &mut AnyConnection,
    user_id: UserId,
    name: &str,
    password_hash: Option<&str>,
) -> DbResult<()> {
    diesel::update(users::table.find(user_id)).set(users::name.eq(name)).execute(conn)?;
    if let Some(hash) = password_hash {
        diesel::update(users::table.find(user_id)).set(users::password_hash.eq(hash)).execute(conn)?;
    }
    Ok(())
}

pub fn list(conn: &mut AnyConnection) -> DbResult<Vec<User>> {
    Ok(users::table.order(users::name).select(User::as_select()).load(conn)?)
}

pub fn delete(conn: &mut AnyConnection, user_id: UserId) -> DbResult<()> {
    diesel::delete(users::table.find(user_id)).execute(conn)?;
    Ok(())
}

/// Adds what the user's groups give them to their own permissions.
pub fn with_group_rights(conn: &mut AnyConnection, mut user: User) -> DbResult<User> {
    if !user.is_admin() {
        user.permissions = user.permissions.union(super::groups::permissions_of(conn, user.id)?);
    }
    Ok(user)
}

/// Who has been granted access to a cache: (user id, user name, can push).
pub fn grants_on(conn: &mut AnyConnection, cache_id: i64) -> DbResult<Vec<(UserId, String, GrantLevel)>> {
    let rows: Vec<(UserId, String, String, bool, bool)> = cache_permissions::table
        .inner_join(users::table)
        .filter(cache_permissions::cache_id.eq(cache_id))
        .order(users::login)
        .select((users::id, users::name, users::login, cache_permissions::can_push, cache_permissions::can_manage))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, name, login, push, manage)| {
            (id, super::models::user_label(&name, &login), GrantLevel::from_columns(push, manage))
        })
        .collect())
}

/// The caches a user has been granted access to: (cache id, cache name, level).
pub fn grants_of(conn: &mut AnyConnection, UserId(user_id): UserId) -> DbResult<Vec<(i64, String, GrantLevel)>> {
    use super::schema::caches;
    let rows: Vec<(i64, String, bool, bool)> = cache_permissions::table
        .inner_join(caches::table)
        .filter(cache_permissions::user_id.eq(user_id))
        .order(caches::name)
        .select((caches::id, caches::name, cache_permissions::can_push, cache_permissions::can_manage))
        .load(conn)?;
    Ok(rows.into_iter().map(|(id, name, push, manage)| (id, name, GrantLevel::from_columns(push, manage))).collect())
}

/// An administrator's change of a user's display name and email address (how they sign in
/// with a password); the login stays.
pub fn set_profile(conn: &mut AnyConnection, UserId(user_id): UserId, name: &str, email: &str) -> DbResult<()> {
    diesel::update(users::table.find(user_id)).set((users::name.eq(name), users::email.eq(email))).execute(conn)?;
    Ok(())
}

pub fn revoke_grant(conn: &mut AnyConnection, CacheId(cache_id): CacheId, UserId(user_id): UserId) -> DbResult<()> {
    diesel::delete(cache_permissions::table.find((cache_id, user_id))).execute(conn)?;
    Ok(())
}

pub fn find_by_email(conn: &mut AnyConnection, email: &str) -> DbResult<Option<User>> {
    Ok(users::table.filter(users::email.eq(email)).select(User::as_select()).first(conn).optional()?)
}

/// Is there an administrator, by flag or through a group? (None means first-run setup.)
pub fn any_admin(conn: &mut AnyConnection) -> DbResult<bool> {
    Ok(super::groups::administrator_count(conn)? > 0)
}

/// The user's tokens, newest first.
pub fn tokens_of(conn: &mut AnyConnection, user_id: UserId) -> DbResult<Vec<ApiToken>> {
    Ok(api_tokens::table
        .filter(api_tokens::user_id.eq(user_id))
        .order(api_tokens::id.desc())
        .select(ApiToken::as_select())
        .load(conn)?)
}

/// The names of the caches each of the user's cache-scoped tokens is limited to, by token id.
pub fn token_scopes_of(
    conn: &mut AnyConnection,
    user_id: UserId,
) -> DbResult<std::collections::HashMap<TokenId, Vec<String>>> {
    use super::schema::caches;
    let rows: Vec<(TokenId, String)> = token_caches::table
        .inner_join(api_tokens::table)
        .inner_join(caches::table)
        .filter(api_tokens::user_id.eq(user_id))
        .order(caches::name)
        .select((token_caches::token_id, caches::name))
        .load(conn)?;
    let mut scopes = std::collections::HashMap::<TokenId, Vec<String>>::new();
    for (token_id, cache) in rows {
        scopes.entry(token_id).or_default().push(cache);
    }
    Ok(scopes)
}

/// Revokes one of the user's tokens by id; returns how many were revoked (0 or 1).
pub fn revoke_token_by_id(
    conn: &mut AnyConnection,
    UserId(user_id): UserId,
    TokenId(token_id): TokenId,
) -> DbResult<usize> {
    Ok(diesel::update(
        api_tokens::table
            .filter(api_tokens::id.eq(token_id))
            .filter(api_tokens::user_id.eq(user_id))
            .filter(api_tokens::revoked_at.is_null()),
    )
    .set(api_tokens::revoked_at.eq(now()))
    .execute(conn)?)
}

/// The name of one of the user's tokens that still works (neither revoked nor expired).
fn working_token_name(
    conn: &mut AnyConnection,
    UserId(user_id): UserId,
    TokenId(token_id): TokenId,
) -> DbResult<Option<String>> {
    Ok(api_tokens::table
        .filter(api_tokens::id.eq(token_id))
        .filter(api_tokens::user_id.eq(user_id))
        .filter(api_tokens::revoked_at.is_null())
        .filter(api_tokens::expires_at.is_null().or(api_tokens::expires_at.gt(now())))
        .select(api_tokens::name)
        .first(conn)
        .optional()?)
}

/// Renames one of the user's working tokens and sets its expiry; its scope stays. False when
/// there is no such working token.
pub fn edit_token(
    conn: &mut AnyConnection,
    owner: UserId,
    token: TokenId,
    name: &str,
    expires_at: Option<NaiveDateTime>,
) -> DbResult<bool> {
    if working_token_name(conn, owner, token)?.is_none() {
        return Ok(false);
    }
    diesel::update(api_tokens::table.find(token.0))
        .set((api_tokens::name.eq(name), api_tokens::expires_at.eq(expires_at)))
        .execute(conn)?;
    Ok(true)
}

/// Gives one of the user's working tokens a new secret (its hash): the old secret matches
/// nothing from this commit on. The token's name, or None when there is no such token.
pub fn replace_token_secret(
    conn: &mut AnyConnection,
    owner: UserId,
    token: TokenId,
    token_hash: &str,
) -> DbResult<Option<String>> {
    let Some(name) = working_token_name(conn, owner, token)? else { return Ok(None) };
    diesel::update(api_tokens::table.find(token.0)).set(api_tokens::token_hash.eq(token_hash)).execute(conn)?;
    Ok(Some(name))
}

/// Deletes the user's tokens that no longer work (expired or revoked); how many went.
pub fn delete_ended_tokens(conn: &mut AnyConnection, UserId(user_id): UserId) -> DbResult<usize> {
    Ok(diesel::delete(
        api_tokens::table
            .filter(api_tokens::user_id.eq(user_id))
            .filter(api_tokens::revoked_at.is_not_null().or(api_tokens::expires_at.le(now()))),
    )
    .execute(conn)?)
}

pub fn find(conn: &mut AnyConnection, user_id: UserId) -> DbResult<Option<User>> {
    Ok(users::table.find(user_id).select(User::as_select()).first(conn).optional()?)
}

/// The user with this login (how administrators name users; display names can change).
pub fn find_by_login(conn: &mut AnyConnection, login: &str) -> DbResult<Option<User>> {
    Ok(users::table.filter(users::login.eq(login)).select(User::as_select()).first(conn).optional()?)
}

/// Grants `level` on the cache; replaces an earlier grant.
pub fn grant(
    conn: &mut AnyConnection,
    CacheId(cache_id): CacheId,
    UserId(user_id): UserId,
    level: GrantLevel,
) -> DbResult<()> {
    let (can_push, can_manage) = level.columns();
    diesel::delete(cache_permissions::table.find((cache_id, user_id))).execute(conn)?;
    diesel::insert_into(cache_permissions::table)
        .values((
            cache_permissions::cache_id.eq(cache_id),
            cache_permissions::user_id.eq(user_id),
            cache_permissions::can_push.eq(can_push),
            cache_permissions::can_manage.eq(can_manage),
        ))
        .execute(conn)?;
    Ok(())
}

/// The strongest grant the user or one of their groups holds on the cache, if any.
pub fn permission(
    conn: &mut AnyConnection,
    CacheId(cache_id): CacheId,
    UserId(user_id): UserId,
) -> DbResult<Option<GrantLevel>> {
    let own: Option<(bool, bool)> = cache_permissions::table
        .find((cache_id, user_id))
        .select((cache_permissions::can_push, cache_permissions::can_manage))
        .first(conn)
        .optional()?;
    let own = own.map(|(push, manage)| GrantLevel::from_columns(push, manage));
    let via_groups = super::groups::permission_via_groups(conn, CacheId(cache_id), UserId(user_id))?;
    Ok(own.max(via_groups))
}

/// Ids of every cache the user, or one of their groups, was granted access to.
pub fn readable_cache_ids(conn: &mut AnyConnection, user_id: UserId) -> DbResult<Vec<i64>> {
    let mut ids: Vec<i64> = cache_permissions::table
        .filter(cache_permissions::user_id.eq(user_id))
        .select(cache_permissions::cache_id)
        .load(conn)?;
    ids.extend(super::groups::cache_ids_via_groups(conn, user_id)?);
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}

/// What a new token may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenScope {
    /// Only these caches; `None` means every cache the user can access.
    pub cache_ids: Option<Vec<i64>>,
    pub read_only: bool,
}

impl TokenScope {
    /// All of the user's own rights: no cache list, not read-only.
    pub fn is_unlimited(&self) -> bool {
        self.cache_ids.is_none() && !self.read_only
    }
}

pub fn create_token(
    conn: &mut AnyConnection,
    user_id: UserId,
    name: &str,
    token_hash: &str,
    expires_at: Option<NaiveDateTime>,
    scope: &TokenScope,
) -> DbResult<()> {
    diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::user_id.eq(user_id),
            api_tokens::name.eq(name),
            api_tokens::token_hash.eq(token_hash),
            api_tokens::expires_at.eq(expires_at),
            api_tokens::created_at.eq(now()),
            api_tokens::can_push.eq(!scope.read_only),
            api_tokens::cache_scoped.eq(scope.cache_ids.is_some()),
        ))
        .execute(conn)?;
    if let Some(ids) = &scope.cache_ids {
        let token_id: i64 =
            api_tokens::table.filter(api_tokens::token_hash.eq(token_hash)).select(api_tokens::id).first(conn)?;
        for cache_id in ids {
            diesel::insert_into(token_caches::table)
                .values((token_caches::token_id.eq(token_id), token_caches::cache_id.eq(cache_id)))
                .execute(conn)?;
        }
    }
    Ok(())
}

/// The caches a token is limited to; `None` when it is not limited.
/// The caches a token is limited to (`None`: not limited). A scoped token whose caches were
/// all deleted gets an empty list: no access.
pub fn token_cache_ids(conn: &mut AnyConnection, token: &ApiToken) -> DbResult<Option<Vec<i64>>> {
    if !token.cache_scoped {
        return Ok(None);
    }
    let ids: Vec<i64> =
        token_caches::table.filter(token_caches::token_id.eq(token.id)).select(token_caches::cache_id).load(conn)?;
    Ok(Some(ids))
}

/// The token with this hash and its user, whatever its state (the caller checks expiry).
pub fn find_token(conn: &mut AnyConnection, token_hash: &str) -> DbResult<Option<(ApiToken, User)>> {
    let found: Option<(ApiToken, User)> = api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(token_hash))
        .select((ApiToken::as_select(), User::as_select()))
        .first(conn)
        .optional()?;
    found.map(|(token, user)| Ok((token, with_group_rights(conn, user)?))).transpose()
}

pub fn touch_token(conn: &mut AnyConnection, token: TokenId, at: NaiveDateTime) -> DbResult<()> {
    diesel::update(api_tokens::table.find(token)).set(api_tokens::last_used_at.eq(at)).execute(conn)?;
    Ok(())
}

pub fn revoke_token(conn: &mut AnyConnection, user_id: UserId, name: &str) -> DbResult<usize> {
    Ok(diesel::update(api_tokens::table.filter(api_tokens::user_id.eq(user_id)).filter(api_tokens::name.eq(name)))
        .set(api_tokens::revoked_at.eq(now()))
        .execute(conn)?)
}

/// Stores (or, with `None`, removes) the user's avatar PNG.
pub fn set_avatar(conn: &mut AnyConnection, UserId(user_id): UserId, png: Option<&[u8]>) -> DbResult<()> {
    diesel::update(users::table.find(user_id)).set(users::avatar.eq(png)).execute(conn)?;
    Ok(())
}

/// Whether the account is linked to an identity at the single sign-on provider (which
/// sets its name and address at every sign-in).
pub fn is_sso_linked(conn: &mut AnyConnection, UserId(user_id): UserId) -> DbResult<bool> {
    Ok(users::table.find(user_id).select(users::oidc_subject.is_not_null()).first(conn).optional()?.unwrap_or(false))
}

pub fn avatar(conn: &mut AnyConnection, UserId(user_id): UserId) -> DbResult<Option<Vec<u8>>> {
    Ok(users::table.find(user_id).select(users::avatar).first::<Option<Vec<u8>>>(conn).optional()?.flatten())
}
