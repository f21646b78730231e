//! One error type for every handler, rendered as JSON `{"error": "..."}` that says what to do.

use poem::http::{StatusCode, header};
use poem::{Response, error::ResponseError};

use crate::services::identity::auth::AuthError;
use crate::services::upload::push_error::PushError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    NotFound(String),
    /// Missing or wrong credentials: 401 with a Basic challenge so netrc users get asked.
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    TooLarge(String),
    /// The client sent its body too slowly (CLIENT_TIMEOUT).
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    Internal(String),
    /// A dependency (storage, database) is down: 503 with Retry-After, so clients retry.
    #[error("{0}")]
    Unavailable(String),
}

impl ResponseError for AppError {
    fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Gone(_) => StatusCode::GONE,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn as_response(&self) -> Response {
        // Database and storage error text stays in the log; the client gets an id to quote.
        let message = match self {
            Self::Internal(detail) => {
                let id = incident_id();
                tracing::error!(request_id = id, "internal error: {detail}");
                format!("internal server error (request id {id}; the server log has the details)")
            }
            Self::Unavailable(msg) => {
                tracing::warn!("unavailable: {msg}");
                msg.clone()
            }
            other => other.to_string(),
        };
        let body = serde_json::to_string(&hibernation::api::ApiError { error: message }).unwrap_or_default();
        let mut response = Response::builder().status(self.status()).content_type("application/json").body(body);
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, "Basic realm=\"hibernation\"".parse().unwrap());
        }
        if matches!(self, Self::Unavailable(_)) {
            response.headers_mut().insert(header::RETRY_AFTER, "5".parse().unwrap());
        }
        response
    }
}

/// A short random id that ties an error answer to its log line.
pub fn incident_id() -> String {
    crate::random::random_id()[..12].to_string()
}

/// A storage fault as a 503: the detail is logged under an id, the client is told to retry.
pub fn storage_unavailable(detail: &dyn std::fmt::Display) -> AppError {
    let id = incident_id();
    tracing::warn!(request_id = id, "storage error: {detail}");
    AppError::Unavailable(format!("storage is unavailable; try again later (request id {id})"))
}

impl From<crate::db::DbError> for AppError {
    fn from(e: crate::db::DbError) -> Self {
        if e.is_unavailable() {
            let id = incident_id();
            tracing::warn!(request_id = id, "database unavailable: {e}");
            return Self::Unavailable(format!("the database is unavailable; try again later (request id {id})"));
        }
        if e.is_transient_conflict() {
            // Where the work was not retried already: the client's retry is the remedy.
            let id = incident_id();
            tracing::warn!(request_id = id, "database conflict: {e}");
            return Self::Unavailable(format!(
                "the database was busy with a conflicting change; try again (request id {id})"
            ));
        }
        Self::Internal(e.to_string())
    }
}

impl From<crate::services::serving::answers::ServingError> for AppError {
    fn from(e: crate::services::serving::answers::ServingError) -> Self {
        match e {
            crate::services::serving::answers::ServingError::Db(e) => e.into(),
            crate::services::serving::answers::ServingError::Storage(detail) => storage_unavailable(&detail),
        }
    }
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Db(e) => e.into(),
            other => Self::Unauthorized(format!("{other}; create a new token and log in again")),
        }
    }
}

impl From<PushError> for AppError {
    fn from(e: PushError) -> Self {
        let msg = e.to_string();
        match e {
            PushError::CacheNotFound(_) => Self::NotFound(msg),
            PushError::Forbidden(_) | PushError::ForceNotAllowed(_) => Self::Forbidden(msg),
            PushError::InvalidInput(_) => Self::BadRequest(msg),
            PushError::MissingReferences { .. } | PushError::UploadRequired(_) => Self::Conflict(msg),
            PushError::BadSignature(_) | PushError::NarMismatch(_) | PushError::MalformedNar(_) => {
                Self::Unprocessable(msg)
            }
            PushError::Interrupted(_) => Self::BadRequest(msg),
            PushError::OverQuota { .. } | PushError::TooLarge(_) => Self::TooLarge(msg),
            PushError::Db(e) => e.into(),
            PushError::Storage(e) => storage_unavailable(&e),
            PushError::UpstreamUnreachable(_) | PushError::Busy(_) => Self::Unavailable(msg),
            PushError::Internal(_) => Self::Internal(msg),
        }
    }
}

impl From<crate::services::lifecycle::pins::PinError> for AppError {
    fn from(e: crate::services::lifecycle::pins::PinError) -> Self {
        use crate::services::lifecycle::pins::PinError;
        let msg = e.to_string();
        match e {
            PinError::InvalidName(_) | PinError::InvalidPath(_) | PinError::InvalidLifetime => Self::BadRequest(msg),
            PinError::NotInCache { .. } => Self::Conflict(msg),
            PinError::NoSuchPin { .. } => Self::NotFound(msg),
            PinError::Db(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upload_the_server_is_too_busy_for_is_told_to_come_back() {
        let busy = AppError::from(PushError::Busy("the server is decompressing too much; try again later".into()));
        let response = busy.as_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers().get(header::RETRY_AFTER).unwrap(), "5");
    }
}
