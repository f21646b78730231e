//! Changing one's own email address (which is how one signs in): a single-use code goes to
//! the old address and one to the new; only both together change it. Someone who took over
//! a session cannot move the account to their own mailbox, and nobody claims an address they
//! cannot read. Codes are stored hashed, expire, and five wrong tries end the change.

use chrono::Duration;

use super::auth::hash_token;
use super::passwords;
use crate::db::email_changes::{self, NewCodes, PendingEmailChange};
use crate::db::ids::UserId;
use crate::db::models::User;
use crate::db::{Db, DbError, is_unique_violation, now, sessions, users};
use crate::services::mail::{self, MailError, SmtpSettings};

pub const CODE_LIFETIME: Duration = Duration::minutes(30);

#[derive(askama::Template)]
#[template(path = "mail/email_change_new.txt")]
struct ToNewAddress<'a> {
    name: &'a str,
    new_email: &'a str,
    minutes: i64,
    code: &'a str,
}

#[derive(askama::Template)]
#[template(path = "mail/email_change_old.txt")]
struct ToOldAddress<'a> {
    name: &'a str,
    old_email: &'a str,
    new_email: &'a str,
    minutes: i64,
    code: &'a str,
}

/// Wrong tries before the change is dropped and must be asked for again.
pub const MAX_FAILED_TRIES: i64 = 5;
/// Changes one account may ask for per window (each sends two mails).
const STARTS_PER_WINDOW: i64 = 5;
const START_WINDOW: Duration = Duration::minutes(15);
/// No 0/O or 1/I: codes are read from a mail and typed.
const CODE_ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";

#[derive(Debug, thiserror::Error)]
pub enum EmailChangeError {
    /// A form field's problem: (field, message).
    #[error("{1}")]
    Field(&'static str, String),
    #[error("there is no change of address waiting (or it expired, or had too many wrong tries): ask again")]
    NothingPending,
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn field(name: &'static str, message: impl Into<String>) -> EmailChangeError {
    EmailChangeError::Field(name, message.into())
}

/// A code as mailed: 8 characters (40 bits) in two groups, `K7QM-4XPA`.
fn new_code() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    let chars: String = (0..8).map(|_| CODE_ALPHABET[rng.random_range(0..CODE_ALPHABET.len())] as char).collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// The hash a code is stored and checked as: bound to the user and to which mailbox it
/// went, and forgiving of case, spaces and the dash.
fn code_hash(user_id: UserId, mailbox: &str, code: &str) -> String {
    let typed: String = code.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_uppercase()).collect();
    hash_token(&format!("email-change:{user_id}:{mailbox}:{typed}"))
}

/// The change waiting for `user`'s codes, if it has not expired.
pub async fn pending(db: &Db, user: &User) -> Result<Option<PendingEmailChange>, DbError> {
    let id = user.id;
    let found = db.read(move |c| email_changes::pending(c, id)).await?;
    Ok(found.filter(|p| p.expires_at > now() && p.failed_tries < MAX_FAILED_TRIES))
}

/// What the person typed to ask for a change.
pub struct ChangeRequest<'a> {
    pub new_email: &'a str,
    /// Needed when the account has a password: a stolen session alone cannot start a change.
    pub current_password: &'a str,
}

/// Mails a code to the new address and one to the current one (when there is one).
pub async fn start(
    db: &Db,
    smtp: Option<&SmtpSettings>,
    user: &User,
    request: ChangeRequest<'_>,
) -> Result<(), EmailChangeError> {
    let new_email = request.new_email.trim().to_ascii_lowercase();
    if new_email.len() > 254 || new_email.parse::<lettre::Address>().is_err() {
        return Err(field("new_email", "Enter a valid email address."));
    }
    if user.email.as_deref() == Some(new_email.as_str()) {
        return Err(field("new_email", "That is your address already."));
    }
    let (id, lookup, key) = (user.id, new_email.clone(), format!("email-change:{}", user.id));
    // Counted before the password is checked, so a stolen session cannot guess it here
    // faster than at sign-in.
    db.write(move |c| {
        if users::is_sso_linked(c, id)? {
            return crate::db::refuse(field(
                "new_email",
                "Your address comes from single sign-on: change it at your identity provider.",
            ));
        }
        if sessions::failures_since(c, &key, now() - START_WINDOW)? >= STARTS_PER_WINDOW {
            return crate::db::refuse(field(
                "new_email",
                "Too many changes asked for; try again in a quarter of an hour.",
            ));
        }
        sessions::record_failure(c, &key)?;
        if users::find_by_email(c, &lookup)?.is_some_and(|other| other.id != id) {
            return crate::db::refuse_keeping_writes(field("new_email", "Another account has this address."));
        }
        Ok(Ok(()))
    })
    .await??;
    if user.password_hash.is_some()
        && !passwords::verify_async(request.current_password, user.password_hash.as_deref()).await
    {
        return Err(field("email_password", "That is not your current password."));
    }
    let smtp = smtp.ok_or(MailError::NotConfigured)?;
    let (new_code, old_code) = (new_code(), user.email.as_ref().map(|_| new_code()));
    let codes_new_hash = code_hash(id, "new", &new_code);
    let codes_old_hash = old_code.as_ref().map(|code| code_hash(id, "old", code));
    let stored = new_email.clone();
    db.write(move |c| {
        let codes = NewCodes {
            new_email: &stored,
            old_code_hash: codes_old_hash.as_deref(),
            new_code_hash: &codes_new_hash,
            expires_at: now() + CODE_LIFETIME,
        };
        email_changes::start(c, id, codes)
    })
    .await?;
    let minutes = CODE_LIFETIME.num_minutes();
    let to_new = mail::text(&ToNewAddress { name: &user.name, new_email: &new_email, minutes, code: &new_code });
    let sent = async {
        mail::send(smtp, &new_email, "Confirm your new address for Hibernation", to_new).await?;
        if let (Some(old), Some(code)) = (&user.email, &old_code) {
            let to_old =
                ToOldAddress { name: &user.name, old_email: old, new_email: &new_email, minutes, code: code.as_str() };
            let to_old = mail::text(&to_old);
            mail::send(smtp, old, "Your Hibernation address is about to change", to_old).await?;
        }
        Ok::<(), MailError>(())
    }
    .await;
    if let Err(e) = sent {
        db.write(move |c| email_changes::cancel(c, id)).await?;
        return Err(e.into());
    }
    Ok(())
}

/// The codes the person typed from the two mails.
pub struct Codes<'a> {
    pub old_code: &'a str,
    pub new_code: &'a str,
}

/// Changes the address when both codes are right; returns the new address. A wrong try is
/// counted and the codes stay as they were.
pub async fn confirm(db: &Db, user: &User, codes: Codes<'_>) -> Result<String, EmailChangeError> {
    let pending = pending(db, user).await?.ok_or(EmailChangeError::NothingPending)?;
    let id = user.id;
    let new_right = code_hash(id, "new", codes.new_code) == pending.new_code_hash;
    let old_right = pending.old_code_hash.as_ref().is_none_or(|hash| code_hash(id, "old", codes.old_code) == *hash);
    if !(new_right && old_right) {
        let tries = db.write(move |c| email_changes::count_failed_try(c, id)).await?;
        let left = MAX_FAILED_TRIES - tries;
        if left <= 0 {
            db.write(move |c| email_changes::cancel(c, id)).await?;
            return Err(EmailChangeError::NothingPending);
        }
        let which = if !new_right { "new_code" } else { "old_code" };
        return Err(field(which, format!("That code is not right ({left} tries left). Nothing was changed.")));
    }
    let new_email = pending.new_email.clone();
    match db.write(move |c| email_changes::finish(c, id, &new_email)).await {
        Ok(()) => Ok(pending.new_email),
        Err(e) if is_unique_violation(&e) => Err(field("new_code", "Another account took this address meanwhile.")),
        Err(e) => Err(e.into()),
    }
}

pub async fn cancel(db: &Db, user: &User) -> Result<(), DbError> {
    let id = user.id;
    db.write(move |c| email_changes::cancel(c, id)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_readable_and_checked_forgivingly_but_only_for_their_mailbox() {
        let code = new_code();
        assert_eq!(code.len(), 9);
        assert!(code.chars().all(|c| c == '-' || CODE_ALPHABET.contains(&(c as u8))), "{code}");
        let stored = code_hash(UserId(7), "new", &code);
        assert_eq!(code_hash(UserId(7), "new", &format!(" {} ", code.to_lowercase().replace('-', ""))), stored);
        assert_ne!(code_hash(UserId(7), "old", &code), stored, "a code counts only for the mailbox it went to");
        assert_ne!(code_hash(UserId(8), "new", &code), stored, "nor for another account");
    }
}
