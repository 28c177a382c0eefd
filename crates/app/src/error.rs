//! What can go wrong in the application layer, by audience: the user's input
//! (rule errors), a race to retry (conflicts), a missing pathway, or the
//! operator's problem (storage). Storage and internal failures keep their
//! cause as a typed source ([`Failure`]).

use openptl_log::{Failure, LogError};
use openptl_rules::RuleError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The rules refused event `index` of the request (None for a lone event).
    #[error("{error}")]
    Rejected {
        index: Option<usize>,
        error: RuleError,
    },
    #[error("expected version {expected}, but the pathway has {current} events")]
    VersionConflict {
        index: Option<usize>,
        expected: u64,
        current: u64,
    },
    #[error("event id reused with different content")]
    DuplicateEventId { index: Option<usize> },
    #[error("pathway not found")]
    PathwayNotFound,
    /// The caller's role may not do this (event `index` of a batch).
    #[error("forbidden: {reason}")]
    Forbidden {
        index: Option<usize>,
        reason: String,
    },
    /// A query parameter could not be used.
    #[error("`{field}` {problem}")]
    InvalidQuery { field: String, problem: String },
    /// Too many views of a past date are waiting already: try again in
    /// `retry_after` seconds.
    #[error("busy: try again later")]
    Busy { retry_after: u64 },
    /// The service is not set up for this (a backup without `--backup-to`,
    /// or on a store whose database backs it up).
    #[error("not configured: {0}")]
    NotConfigured(String),
    /// The log could not be read or written; the operator must act.
    #[error("storage: {0}")]
    Storage(#[source] Failure),
    /// A backup did not finish (a full disk, a backup directory that is not
    /// this log's, another backup into it): nothing of the log changed.
    #[error("backup: {0}")]
    BackupFailed(#[source] Failure),
    /// A write failed in a way that leaves unknown whether it was stored:
    /// sending the same events again (same event ids) is safe.
    #[error("storage, outcome unknown: {0}")]
    OutcomeUnknown(#[source] Failure),
    /// The token store (`tokens.json`) could not be read or written: nothing
    /// changed.
    #[error("token store: {0}")]
    TokenStore(#[source] Failure),
    /// A read of patient data the access log could not record: nothing is
    /// shown (decision 194).
    #[error("access log: {0}")]
    AuditUnavailable(#[source] Failure),
    /// Stored data the rules cannot read: a bug or damage, never the user's fault.
    #[error("internal: {0}")]
    Internal(#[source] Failure),
}

impl AppError {
    /// The log could not be read or written (`what`, and its cause when
    /// it is a [`Failure`] made with one).
    pub fn storage(what: impl Into<Failure>) -> AppError {
        AppError::Storage(what.into())
    }

    /// Stored data the rules cannot read, or a task that failed: a bug or
    /// damage.
    pub fn internal(what: impl Into<Failure>) -> AppError {
        AppError::Internal(what.into())
    }
}

/// A log error as the application's: a storage failure keeps its cause.
/// (Conflicts are mapped where the batch index is known, in `append`.)
impl From<LogError> for AppError {
    fn from(e: LogError) -> AppError {
        match e {
            LogError::OutcomeUnknown(f) => AppError::OutcomeUnknown(f),
            LogError::Storage(f) => AppError::Storage(f),
            other => AppError::Storage(Failure::caused_by("the event log", other)),
        }
    }
}
