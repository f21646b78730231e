//! Sending mail with lettre. Settings come from SMTP_* environment variables (then shown
//! locked in the dashboard) or from the dashboard's settings page (stored in the database).

use std::time::Duration;

use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Body, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::db::mail::StoredSmtp;
use crate::db::{Db, DbError, mail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP (a relay on the same host or network).
    None,
    StartTls,
    /// Implicit TLS (SMTPS, usually port 465).
    Tls,
}

impl Security {
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" | "plain" => Some(Self::None),
            "starttls" => Some(Self::StartTls),
            "tls" | "ssl" => Some(Self::Tls),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StartTls => "starttls",
            Self::Tls => "tls",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::StartTls => 587,
            Self::Tls => 465,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: Option<String>,
    pub password: Option<String>,
    /// `Name <address>` or a bare address.
    pub from: String,
}

impl SmtpSettings {
    /// Checks the settings; the error names the field.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
            return Err(("host", "Enter the SMTP server's host name.".into()));
        }
        if self.port == 0 {
            return Err(("port", "Enter a port number.".into()));
        }
        self.from
            .parse::<Mailbox>()
            .map_err(|_| ("from", "Enter a sender such as Hibernation <cache@example.com>.".to_string()))?;
        Ok(())
    }

    fn from_stored(stored: StoredSmtp) -> Option<Self> {
        Some(Self {
            host: stored.host,
            port: u16::try_from(stored.port).ok()?,
            security: Security::parse(&stored.security)?,
            username: stored.username,
            password: stored.password,
            from: stored.from_address,
        })
    }

    pub fn to_stored(&self) -> StoredSmtp {
        StoredSmtp {
            id: 1,
            host: self.host.clone(),
            port: i32::from(self.port),
            security: self.security.as_str().to_string(),
            username: self.username.clone(),
            password: self.password.clone(),
            from_address: self.from.clone(),
            updated_at: crate::db::now(),
        }
    }
}

/// The settings in force and whether they come from the environment (locked).
pub async fn current(db: &Db, from_env: Option<&SmtpSettings>) -> Result<Option<(SmtpSettings, bool)>, DbError> {
    if let Some(settings) = from_env {
        return Ok(Some((settings.clone(), true)));
    }
    let stored = db.read(mail::smtp).await?;
    Ok(stored.and_then(SmtpSettings::from_stored).map(|s| (s, false)))
}

/// The SMTP password saved in the database, kept when the settings form leaves it empty.
pub async fn saved_password(db: &Db) -> Result<Option<String>, DbError> {
    Ok(db.read(mail::smtp).await?.and_then(|s| s.password))
}

/// Saves the mail settings an administrator entered on the settings page.
pub async fn save(db: &Db, settings: &SmtpSettings) -> Result<(), DbError> {
    let row = settings.to_stored();
    db.write(move |c| mail::save_smtp(c, &row)).await
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("mail is not set up: an administrator enters the SMTP server on the settings page")]
    NotConfigured,
    #[error("{0} is not an email address")]
    BadAddress(String),
    #[error("the mail could not be sent: {0}")]
    Send(String),
}

fn transport(settings: &SmtpSettings) -> Result<AsyncSmtpTransport<Tokio1Executor>, MailError> {
    let builder = match settings.security {
        Security::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host),
        Security::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&settings.host)
            .map_err(|e| MailError::Send(e.to_string()))?,
        Security::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&settings.host).map_err(|e| MailError::Send(e.to_string()))?
        }
    };
    let mut builder = builder.port(settings.port).timeout(Some(Duration::from_secs(20)));
    if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
        builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
    }
    Ok(builder.build())
}

/// The text as it is, with CRLF line ends: links must reach the reader whole, and lettre
/// would otherwise pick quoted-printable for lines over 76 characters, which breaks them
/// across lines. ASCII goes as 7bit, anything else as 8bit; SMTP allows 998 per line.
fn unwrapped_body(text: &str) -> Result<Body, MailError> {
    if text.lines().any(|line| line.len() > 900) {
        return Err(MailError::Send("the mail has a line too long for SMTP".into()));
    }
    let crlf: String = text.lines().map(|line| format!("{line}\r\n")).collect();
    let encoding = if text.is_ascii() { ContentTransferEncoding::SevenBit } else { ContentTransferEncoding::EightBit };
    Ok(Body::dangerous_pre_encoded(crlf.into_bytes(), encoding))
}

/// A mail's text from its template (`templates/mail/*.txt`, not escaped: plain text).
pub fn text(template: &impl askama::Template) -> String {
    let mut body = template.render().expect("mail templates render");
    body.push('\n');
    body
}

#[derive(askama::Template)]
#[template(path = "mail/test.txt")]
pub struct TestMail;

/// Sends a plain-text mail.
pub async fn send(settings: &SmtpSettings, to: &str, subject: &str, body: String) -> Result<(), MailError> {
    let from: Mailbox = settings.from.parse().map_err(|_| MailError::BadAddress(settings.from.clone()))?;
    let to_box: Mailbox = to.parse().map_err(|_| MailError::BadAddress(to.to_string()))?;
    let body = unwrapped_body(&body)?;
    let message = Message::builder()
        .from(from)
        .to(to_box)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| MailError::Send(e.to_string()))?;
    transport(settings)?.send(message).await.map_err(|e| MailError::Send(e.to_string()))?;
    Ok(())
}
