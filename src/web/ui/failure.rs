//! Why a dashboard request could not be done, and the page that says so. Every handler
//! answers its failures through this one type, so statuses, headings and logging agree.

use poem::http::StatusCode;
use poem::{Request, Response};

use super::message;
use crate::db::models::User;
use crate::web::AppState;

pub enum Failure {
    /// The database failed (503). The details go to the log, never to the page.
    Unavailable(String),
    /// The user may not do this (403); the text says who may.
    Forbidden(String),
    /// The form's CSRF token is not this session's (403): an old page or another site.
    FormExpired,
    /// No cache of this name that the user can see (404): a cache they may not read looks
    /// the same as one that does not exist.
    NoSuchCache(String),
    /// The action would break something that must hold, e.g. the last administrator (409).
    Conflict { heading: &'static str, text: String },
    /// The request cannot be done as asked (422).
    Invalid { heading: &'static str, text: String },
    /// A mailed link that was used already or expired (410).
    LinkGone,
}

impl From<crate::db::DbError> for Failure {
    fn from(e: crate::db::DbError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

impl Failure {
    /// The page that explains the failure to `user` (None before sign-in).
    pub fn page(self, state: &AppState, req: &Request, user: Option<&User>) -> Response {
        let (status, heading, text) = match self {
            Self::Unavailable(detail) => {
                tracing::error!("dashboard: {detail}");
                (StatusCode::SERVICE_UNAVAILABLE, "Try again", "The database is not reachable right now.".to_string())
            }
            Self::Forbidden(text) => (StatusCode::FORBIDDEN, "Not allowed", text),
            Self::FormExpired => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form is out of date or did not come from this site. Reload the page and try again.".into(),
            ),
            Self::NoSuchCache(name) => {
                (StatusCode::NOT_FOUND, "Not found", format!("There is no cache named {name:?} that you can see."))
            }
            Self::Conflict { heading, text } => (StatusCode::CONFLICT, heading, text),
            Self::Invalid { heading, text } => (StatusCode::UNPROCESSABLE_ENTITY, heading, text),
            Self::LinkGone => (
                StatusCode::GONE,
                "This link no longer works",
                "It was used already, or it expired. Ask an administrator for a new invitation, or ask for a new reset link."
                    .into(),
            ),
        };
        message(state, req, user, status, heading, &text)
    }
}
