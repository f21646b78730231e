//! Why a push was refused, shared by every step of a push (planning, receiving the NAR,
//! making room, committing), so those steps need not depend on each other for it.

use crate::db::DbError;
use std::io;

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("cache {0:?} does not exist (or is private and not shared with you)")]
    CacheNotFound(String),
    #[error("you may not push to cache {0:?}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    BadSignature(String),
    #[error("{path} references paths that are not in the cache yet: {}", missing.join(", "))]
    MissingReferences { path: String, missing: Vec<String> },
    #[error("the NAR of {0} must be uploaded")]
    UploadRequired(String),
    #[error("the uploaded NAR does not match the narinfo: {0}")]
    NarMismatch(String),
    #[error("the uploaded NAR is malformed: {0}")]
    MalformedNar(String),
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error(
        "cache {0:?} does not allow --force: paths its upstream caches serve are not stored again (an administrator can allow it in the cache settings)"
    )]
    ForceNotAllowed(String),
    #[error(
        "{0} references paths the cache lacks, and an upstream cache that may hold them cannot be reached; try again later"
    )]
    UpstreamUnreachable(String),
    #[error("cache {cache:?} is full: it holds {used} of its {quota} quota, and this NAR needs {needed} more; {why}")]
    OverQuota { cache: String, used: String, quota: String, needed: String, why: &'static str },
    #[error("{0}")]
    TooLarge(String),
    /// The server is busy with other uploads: try again later (503).
    #[error("{0}")]
    Busy(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("storage error: {0}")]
    Storage(io::Error),
    #[error("{0}")]
    Internal(String),
}

impl PushError {
    /// A short name for metrics (`rejected uploads by reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CacheNotFound(_) => "cache_not_found",
            Self::Forbidden(_) | Self::ForceNotAllowed(_) => "forbidden",
            Self::InvalidInput(_) => "invalid",
            Self::BadSignature(_) => "bad_signature",
            Self::MissingReferences { .. } => "missing_references",
            Self::UploadRequired(_) => "upload_required",
            Self::NarMismatch(_) => "nar_mismatch",
            Self::MalformedNar(_) => "malformed_nar",
            Self::Interrupted(_) => "interrupted",
            Self::UpstreamUnreachable(_) => "upstream_unreachable",
            Self::OverQuota { .. } => "over_quota",
            Self::TooLarge(_) => "too_large",
            Self::Busy(_) => "busy",
            Self::Db(_) => "database",
            Self::Storage(_) => "storage",
            Self::Internal(_) => "internal",
        }
    }
}
