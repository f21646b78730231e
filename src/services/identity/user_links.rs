//! Invitations and password resets by mail: a single-use link with a random secret (only its
//! SHA-256 is stored) that expires, and lets the person set their own password.

use crate::db::ids::UserId;
use chrono::Duration;

use super::auth::hash_token;
use super::passwords;
use crate::db::mail::{self as links, LinkPurpose};
use crate::db::models::User;
use crate::db::{Db, DbError, is_unique_violation, now, sessions, users};
use crate::services::mail::{self, MailError, SmtpSettings};

pub const INVITE_LIFETIME: Duration = Duration::days(7);
pub const RESET_LIFETIME: Duration = Duration::hours(1);

#[derive(askama::Template)]
#[template(path = "mail/invite.txt")]
struct InviteMail<'a> {
    name: &'a str,
    inviter: &'a str,
    days: i64,
    link: &'a str,
}

#[derive(askama::Template)]
#[template(path = "mail/password_reset.txt")]
struct ResetMail<'a> {
    name: &'a str,
    minutes: i64,
    link: &'a str,
}

/// Reset requests one address may make per window; more are dropped without a word.
const RESETS_PER_WINDOW: i64 = 5;
const RESET_WINDOW: Duration = Duration::minutes(15);

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A form field's problem: (field, message).
    #[error("{1}")]
    Field(&'static str, String),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Db(#[from] DbError),
}

fn field(name: &'static str, message: impl Into<String>) -> LinkError {
    LinkError::Field(name, message.into())
}

/// A link secret: 48 random alphanumerics (about 285 bits).
fn new_secret() -> String {
    use rand::Rng;
    rand::rng().sample_iter(rand::distr::Alphanumeric).take(48).map(char::from).collect()
}

fn link_path(purpose: LinkPurpose) -> &'static str {
    match purpose {
        LinkPurpose::Invite => "invite",
        LinkPurpose::Reset => "reset",
    }
}

async fn issue_link(db: &Db, user_id: UserId, purpose: LinkPurpose, site_url: &str) -> Result<String, DbError> {
    let secret = new_secret();
    let (hash, lifetime) =
        (hash_token(&secret), if purpose == LinkPurpose::Invite { INVITE_LIFETIME } else { RESET_LIFETIME });
    db.write(move |c| {
        links::retire_links(c, user_id, purpose)?;
        links::create_link(c, user_id, purpose, &hash, now() + lifetime)
    })
    .await?;
    Ok(format!("{}/{}/{secret}", site_url.trim_end_matches('/'), link_path(purpose)))
}

/// Creates the user (without a password) and mails them an invitation. When the mail
/// cannot be sent, the user is removed again and the error says why.
pub async fn invite(
    db: &Db,
    smtp: Option<&SmtpSettings>,
    site_url: &str,
    inviter: &str,
    name: &str,
    email: &str,
    is_admin: bool,
) -> Result<User, LinkError> {
    let (name, email) = (name.trim().to_string(), email.trim().to_ascii_lowercase());
    if let Some(error) = crate::services::display_name_error(&name) {
        return Err(field("name", error));
    }
    if !email.contains('@') || email.len() > 254 || email.parse::<lettre::Address>().is_err() {
        return Err(field("email", "Enter a valid email address."));
    }
    let smtp = smtp.ok_or(MailError::NotConfigured)?;
    let (n, e) = (name.clone(), email.clone());
    let user = match db.write(move |c| users::create_invited(c, &n, &e, is_admin)).await {
        Ok(user) => user,
        Err(e) if is_unique_violation(&e) => return Err(field("email", "A user with this name or email exists.")),
        Err(e) => return Err(e.into()),
    };
    if let Err(e) = send_invitation(db, smtp, site_url, inviter, &user).await {
        let id = user.id;
        db.write(move |c| users::delete(c, id)).await?;
        return Err(e);
    }
    Ok(user)
}

/// Mails `user` a new invitation link (earlier ones stop working).
async fn send_invitation(
    db: &Db,
    smtp: &SmtpSettings,
    site_url: &str,
    inviter: &str,
    user: &User,
) -> Result<(), LinkError> {
    let email = user.email.clone().ok_or_else(|| field("invite", "This user has no email address."))?;
    let link = issue_link(db, user.id, LinkPurpose::Invite, site_url).await?;
    let body = InviteMail { name: &user.name, inviter, days: INVITE_LIFETIME.num_days(), link: &link };
    mail::send(smtp, &email, "You are invited to Hibernation", mail::text(&body)).await?;
    Ok(())
}

/// Sends a lapsed or lost invitation again, to a user who has not chosen a password yet.
pub async fn reinvite(
    db: &Db,
    smtp: Option<&SmtpSettings>,
    site_url: &str,
    inviter: &str,
    user_id: UserId,
) -> Result<User, LinkError> {
    let smtp = smtp.ok_or(MailError::NotConfigured)?;
    let user = db.read(move |c| users::find(c, user_id)).await?;
    let Some(user) = user.filter(|u| u.password_hash.is_none() && u.email.is_some()) else {
        return Err(field(
            "invite",
            "Only people who were invited and have not chosen a password can be invited again.",
        ));
    };
    send_invitation(db, smtp, site_url, inviter, &user).await?;
    Ok(user)
}

/// Mails a reset link when `email` belongs to a user, unless `peer` asked too often. Says
/// nothing either way: the caller answers the same whatever happens, so nobody learns which
/// addresses exist.
pub async fn request_reset(db: &Db, smtp: Option<&SmtpSettings>, site_url: &str, peer: &str, email: &str) {
    let email = email.trim().to_ascii_lowercase();
    // Counted in the sign-in failure table under their own keys: per asking address, and per
    // mailbox so that many addresses cannot flood one inbox.
    let (lookup, keys) = (email.clone(), [format!("reset:{peer}"), format!("reset-mail:{email}")]);
    let found = db
        .write(move |c| {
            for key in &keys {
                if sessions::failures_since(c, key, now() - RESET_WINDOW)? >= RESETS_PER_WINDOW {
                    return crate::db::refuse("too many reset requests");
                }
            }
            for key in &keys {
                sessions::record_failure(c, key)?;
            }
            Ok(Ok(users::find_by_email(c, &lookup)?))
        })
        .await;
    let user = match found {
        Ok(Ok(Some(user))) => user,
        Ok(Ok(None)) => return,
        Ok(Err(reason)) => return tracing::warn!("password reset not sent: {reason}"),
        Err(e) => return tracing::warn!("password reset: {e}"),
    };
    let Some(smtp) = smtp else { return tracing::warn!("password reset requested, but mail is not set up") };
    let link = match issue_link(db, user.id, LinkPurpose::Reset, site_url).await {
        Ok(link) => link,
        Err(e) => return tracing::warn!("password reset: {e}"),
    };
    let body = ResetMail { name: &user.name, minutes: RESET_LIFETIME.num_minutes(), link: &link };
    if let Err(e) = mail::send(smtp, &email, "Reset your Hibernation password", mail::text(&body)).await {
        tracing::warn!("password reset mail to user {}: {e}", user.id);
    }
}

/// The user a link is valid for (unused, unexpired), if any.
pub async fn valid_link(db: &Db, purpose: LinkPurpose, secret: &str) -> Result<Option<User>, DbError> {
    let hash = hash_token(secret);
    db.read(move |c| Ok(links::find_link(c, purpose, &hash)?.map(|(_, user)| user))).await
}

/// Sets the password through a link, which then stops working. A reset also ends every
/// session of the user. `None` when the link is not (or no longer) valid.
pub async fn complete(db: &Db, purpose: LinkPurpose, secret: &str, password: &str) -> Result<Option<User>, LinkError> {
    if password.chars().count() < passwords::MIN_LENGTH {
        return Err(field("password", format!("Use at least {} characters.", passwords::MIN_LENGTH)));
    }
    let hash = hash_token(secret);
    // The cheap check first: an unknown or used link costs no argon2 work.
    let lookup = hash.clone();
    if db.read(move |c| links::find_link(c, purpose, &lookup)).await?.is_none() {
        return Ok(None);
    }
    let password_hash = passwords::hash_async(password).await;
    let done = db
        .write(move |c| {
            let Some((link_id, user)) = links::find_link(c, purpose, &hash)? else { return Ok(None) };
            if !links::use_link(c, link_id)? {
                return Ok(None);
            }
            users::set_password(c, user.id, &password_hash)?;
            if purpose == LinkPurpose::Reset {
                sessions::delete_for_user(c, user.id)?;
            }
            Ok(Some(user))
        })
        .await?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mail is plain text: names are not HTML-escaped, the link stands on its own line.
    #[test]
    fn mails_are_plain_text_with_the_link_on_its_own_line() {
        let link = "https://cache.example.com/invite/abc";
        let invite = mail::text(&InviteMail { name: "Ann <&>", inviter: "Bo O'Neil", days: 7, link });
        assert!(invite.starts_with("Hello Ann <&>,\n\nBo O'Neil invited you"), "{invite}");
        assert!(invite.contains(&format!("for 7 days):\n\n{link}\n")), "{invite}");
        let reset = mail::text(&ResetMail { name: "Ann", minutes: 30, link });
        assert!(reset.contains(&format!("for 30 minutes):\n\n{link}\n\nIf it was not you")), "{reset}");
        assert!(reset.ends_with("ignore this mail.\n"), "{reset}");
    }
}
