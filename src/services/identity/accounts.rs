//! User accounts as administrators and their owners change them: creating one with a
//! password, changing one's name and password, an administrator's view and change of one
//! account (name, email, password), deleting one (never the last administrator).

use super::passwords;
use crate::db::groups::Group;
use crate::db::ids::UserId;
use crate::db::mail::LinkPurpose;
use crate::db::models::GrantLevel;
use crate::db::models::User;
use crate::db::{Db, DbError, DbResult, groups, is_refused_rollback, is_unique_violation, users};
use crate::services::serving::hot_cache::HotCache;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A field breaks a rule: which one, and what to do instead.
    #[error("{1}")]
    Field(&'static str, String),
    #[error("that would leave no administrator; make someone else an administrator first")]
    LastAdministrator,
    /// The account holds what the one changing it does not (described).
    #[error("this user holds permissions you do not ({0}); only someone who holds them may change this account")]
    BeyondReach(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn field(name: &'static str, message: impl Into<String>) -> AccountError {
    AccountError::Field(name, message.into())
}

/// Runs `change` on user `target` in one transaction with the check that `actor` holds all
/// the target holds, taking turns with other changes of rights, so a concurrent widening of
/// the target cannot slip in between.
async fn within_reach<T: Send + 'static>(
    db: &Db,
    actor: &User,
    target: UserId,
    change: impl FnOnce(&mut crate::db::AnyConnection) -> DbResult<Result<T, AccountError>> + Send + 'static,
) -> Result<T, AccountError> {
    let actor = super::auth::Caller::session(actor);
    let checked = db.write(move |c| {
        groups::take_turns_with_rights_changes(c)?;
        match super::access::user_beyond(c, &actor, target)? {
            Some(held) => crate::db::refuse(AccountError::BeyondReach(held)),
            None => change(c),
        }
    });
    match checked.await {
        Ok(result) => result,
        Err(e) if is_refused_rollback(&e) => Err(AccountError::LastAdministrator),
        Err(e) if is_unique_violation(&e) => Err(field("email", "Another user has this email address.")),
        Err(e) => Err(e.into()),
    }
}

fn check_password(field_name: &'static str, password: &str) -> Result<(), AccountError> {
    if password.chars().count() < passwords::MIN_LENGTH {
        return Err(field(field_name, format!("Use at least {} characters.", passwords::MIN_LENGTH)));
    }
    Ok(())
}

/// Every account, with the permissions their groups give them.
pub async fn list(db: &Db) -> Result<Vec<User>, DbError> {
    db.read(|c| users::list(c)?.into_iter().map(|user| users::with_group_rights(c, user)).collect()).await
}

/// A new account that signs in with its email address (also its login) and `password`.
pub struct NewAccount<'a> {
    pub name: &'a str,
    pub email: &'a str,
    pub password: &'a str,
    pub admin: bool,
}

pub async fn create(db: &Db, account: NewAccount<'_>) -> Result<User, AccountError> {
    let (name, email) = (account.name.trim().to_string(), account.email.trim().to_ascii_lowercase());
    check_name(&name)?;
    check_email(&email)?;
    check_password("password", account.password)?;
    let (hash, admin) = (passwords::hash_async(account.password).await, account.admin);
    let created = db
        .write(move |c| {
            users::create_with_password(c, users::NewIdentity { login: &email, name: &name }, &email, &hash, admin)
        })
        .await;
    match created {
        Err(e) if is_unique_violation(&e) => Err(field("name", "A user with this name or email exists.")),
        other => Ok(other?),
    }
}

fn check_name(name: &str) -> Result<(), AccountError> {
    match crate::services::display_name_error(name) {
        Some(error) => Err(field("name", error)),
        None => Ok(()),
    }
}

fn check_email(email: &str) -> Result<(), AccountError> {
    if !email.contains('@') {
        return Err(field("email", "Enter a valid email address."));
    }
    Ok(())
}

/// Logins name users in commands: 1 to 254 characters without spaces or control characters,
/// so they cannot be mistaken.
fn check_login(login: &str) -> Result<(), AccountError> {
    if login.is_empty() || login.len() > 254 || login.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(field(
            "login",
            format!("a login is 1 to 254 characters without spaces or control characters, got {login:?}"),
        ));
    }
    Ok(())
}

/// An account created on the host (`admin create-user`): named by its login, signing in to
/// the dashboard with `sign_in` (email address, password) when given, else with tokens only.
pub struct HostAccount<'a> {
    pub login: &'a str,
    /// The name shown; the login when `None`.
    pub name: Option<&'a str>,
    pub admin: bool,
    pub sign_in: Option<(&'a str, &'a str)>,
}

/// Creates a [`HostAccount`] under the same rules as [`create`] (and the login's).
pub async fn create_on_host(db: &Db, account: HostAccount<'_>) -> Result<User, AccountError> {
    let login = account.login.to_string();
    let name = account.name.unwrap_or(account.login).trim().to_string();
    check_login(&login)?;
    check_name(&name)?;
    let sign_in = match account.sign_in {
        Some((email, password)) => {
            let email = email.trim().to_ascii_lowercase();
            check_email(&email)?;
            check_password("password", password)?;
            Some((email, passwords::hash_async(password).await))
        }
        None => None,
    };
    let admin = account.admin;
    let created = db
        .write(move |c| {
            let who = users::NewIdentity { login: &login, name: &name };
            match &sign_in {
                Some((email, hash)) => users::create_with_password(c, who, email, hash, admin),
                None => users::create(c, who.login, who.name, admin),
            }
        })
        .await;
    match created {
        Err(e) if is_unique_violation(&e) => {
            Err(field("login", format!("user {:?} (or that name or email address) already exists", account.login)))
        }
        other => Ok(other?),
    }
}

/// The user whose login is `login`.
pub async fn find_by_login(db: &Db, login: &str) -> Result<Option<User>, DbError> {
    let login = login.to_string();
    db.read(move |c| users::find_by_login(c, &login)).await
}

/// A change of one's own account: a new name, and a new password when `new_password` is
/// not empty (proven with the current one).
pub struct AccountChange<'a> {
    pub name: &'a str,
    pub current_password: &'a str,
    pub new_password: &'a str,
    /// The hash of the session the change comes from, which stays signed in.
    pub this_session: String,
}

/// Applies the change; returns whether the password changed.
pub async fn update(db: &Db, user: &User, change: AccountChange<'_>) -> Result<bool, AccountError> {
    let name = change.name.trim().to_string();
    if let Some(error) = crate::services::display_name_error(&name) {
        return Err(field("name", error));
    }
    let new_hash = if change.new_password.is_empty() {
        None
    } else {
        if !passwords::verify_async(change.current_password, user.password_hash.as_deref()).await {
            return Err(field("current_password", "This is not your current password."));
        }
        check_password("new_password", change.new_password)?;
        Some(passwords::hash_async(change.new_password).await)
    };
    let (id, changes_password, this_session) = (user.id, new_hash.is_some(), change.this_session);
    let saved = db
        .write(move |c| {
            users::update_account(c, id, &name, new_hash.as_deref())?;
            if changes_password {
                // A reset link mailed earlier must not undo the password just chosen, and
                // whoever is signed in elsewhere (perhaps with the old password) is signed out.
                crate::db::mail::retire_links(c, id, LinkPurpose::Reset)?;
                crate::db::sessions::delete_others(c, id, &this_session)?;
            }
            Ok(())
        })
        .await;
    match saved {
        Ok(()) => Ok(changes_password),
        Err(e) if is_unique_violation(&e) => Err(field("name", "Another user has this name.")),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the account with its tokens and sessions, unless it is the last administrator.
pub async fn delete(db: &Db, hot: &HotCache, actor: &User, target: UserId) -> Result<(), AccountError> {
    within_reach(db, actor, target, move |c| {
        groups::keeping_an_administrator(c, |c| users::delete(c, target))?;
        crate::db::replication::access_changed(c)?;
        Ok(Ok(()))
    })
    .await?;
    hot.forget_rights();
    Ok(())
}

/// One account as an administrator sees it: its groups and its rights per cache.
pub struct UserDetail {
    pub user: User,
    /// Groups the user is in, and the others: (id, name).
    pub groups: Vec<Group>,
    pub other_groups: Vec<Group>,
    /// Caches the user was granted access to: (id, name, level).
    pub grants: Vec<(i64, String, GrantLevel)>,
    /// Caches without a grant to the user: (id, name).
    pub other_caches: Vec<(i64, String)>,
}

/// User `id` as `viewer` sees them: caches the viewer cannot read are left out (their grants
/// on them as well), so seeing users does not reveal private caches' names.
pub async fn detail(db: &Db, viewer: &User, id: UserId) -> Result<Option<UserDetail>, DbError> {
    let viewer = super::auth::Caller::session(viewer);
    db.read(move |c| {
        let Some(user) = users::find(c, id)? else { return Ok(None) };
        let user = users::with_group_rights(c, user)?;
        let readable = super::access::readable_cache_ids(c, &viewer)?;
        let visible: Vec<i64> =
            crate::db::browse::caches_by_ids(c, readable.as_deref())?.into_iter().map(|cache| cache.id).collect();
        let (mut member_of, mut other_groups) = (Vec::new(), Vec::new());
        for group in groups::list(c)? {
            let is_member = groups::members(c, group.id)?.iter().any(|member| member.id == id);
            if is_member { &mut member_of } else { &mut other_groups }.push(group);
        }
        let mut grants = users::grants_of(c, id)?;
        grants.retain(|(cache, _, _)| visible.contains(cache));
        let other_caches = crate::db::browse::caches_by_ids(c, None)?
            .into_iter()
            .filter(|cache| visible.contains(&cache.id))
            .filter(|cache| !grants.iter().any(|(granted, _, _)| *granted == cache.id))
            .map(|cache| (cache.id, cache.name))
            .collect();
        Ok(Some(UserDetail { user, groups: member_of, other_groups, grants, other_caches }))
    })
    .await
}

/// What `target` holds beyond `actor`, if anything (see [`super::access::user_beyond`]).
pub async fn beyond_reach(db: &Db, actor: &User, target: UserId) -> Result<Option<String>, DbError> {
    let actor = super::auth::Caller::session(actor);
    db.read(move |c| super::access::user_beyond(c, &actor, target)).await
}

/// An administrator sets someone's name and email address (which they sign in with).
/// Someone who may edit users sets another's name and, if `by_administrator`, address: an
/// address nobody proved decides whose account a single sign-on links to, so only an
/// administrator sets one (invitations prove theirs; people change their own with codes).
pub async fn set_profile(db: &Db, actor: &User, user: UserId, name: &str, email: &str) -> Result<(), AccountError> {
    let by_administrator = actor.is_admin();
    let (name, email) = (name.trim().to_string(), email.trim().to_ascii_lowercase());
    if let Some(error) = crate::services::display_name_error(&name) {
        return Err(field("name", error));
    }
    if !email.contains('@') || email.contains(['\r', '\n', ' ']) {
        return Err(field("email", "Enter a valid email address."));
    }
    // A change of address the user asked for themselves would undo this one: it ends.
    within_reach(db, actor, user, move |c| {
        let current = users::find(c, user)?.and_then(|u| u.email);
        if !by_administrator && current.as_deref() != Some(email.as_str()) {
            return crate::db::refuse(field("email", "Only administrators change someone's address."));
        }
        users::set_profile(c, user, &name, &email)?;
        crate::db::email_changes::cancel(c, user).map(Ok)
    })
    .await
}

/// An administrator sets someone's password: every session of theirs ends (but
/// `keep_session`, the administrator's own when they set their own), and reset links mailed
/// earlier stop working.
pub async fn set_password(
    db: &Db,
    actor: &User,
    target: UserId,
    password: &str,
    keep_session: Option<String>,
) -> Result<(), AccountError> {
    check_password("password", password)?;
    let hash = passwords::hash_async(password).await;
    let id = target;
    within_reach(db, actor, target, move |c| {
        users::set_password(c, id, &hash)?;
        crate::db::mail::retire_links(c, id, LinkPurpose::Reset)?;
        match &keep_session {
            Some(keep) => crate::db::sessions::delete_others(c, id, keep),
            None => crate::db::sessions::delete_for_user(c, id),
        }
        .map(Ok)
    })
    .await
}
