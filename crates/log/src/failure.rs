//! [`Failure`]: what failed, in words for the operator, with the error that
//! caused it kept as a typed [`source`](std::error::Error::source) (an
//! `io::Error` whose kind says the disk is full, a PostgreSQL error with its
//! SQLSTATE) instead of flattened into a string.
//!
//! Its `Display` is the words followed by the cause (`segment 3: No space
//! left on device`), so a log line or an operator's message never loses the
//! cause; code that needs the cause's type walks `source()`.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// A failure of storage or of the service itself: what failed, and why.
#[derive(Clone)]
pub struct Failure {
    what: String,
    cause: Option<Arc<dyn Error + Send + Sync + 'static>>,
}

impl Failure {
    /// A failure with no underlying error (a stopped writer, a missing
    /// position).
    pub fn new(what: impl Into<String>) -> Failure {
        Failure {
            what: what.into(),
            cause: None,
        }
    }

    /// A failure caused by `cause` (kept as the source).
    pub fn caused_by(
        what: impl Into<String>,
        cause: impl Error + Send + Sync + 'static,
    ) -> Failure {
        Failure {
            what: what.into(),
            cause: Some(Arc::new(cause)),
        }
    }

    /// What failed, without the cause.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The underlying error of type `E`, if that is what caused this.
    pub fn cause<E: Error + 'static>(&self) -> Option<&E> {
        self.cause.as_deref().and_then(|c| c.downcast_ref::<E>())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Failure");
        d.field("what", &self.what);
        if let Some(cause) = &self.cause {
            d.field("cause", cause);
        }
        d.finish()
    }
}

impl Error for Failure {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn Error + 'static))
    }
}

/// Two failures are equal when they say the same: the causes are compared
/// by their words, as errors are rarely comparable.
impl PartialEq for Failure {
    fn eq(&self, other: &Failure) -> bool {
        self.to_string() == other.to_string()
    }
}

impl Eq for Failure {}

impl From<String> for Failure {
    fn from(what: String) -> Failure {
        Failure::new(what)
    }
}

impl From<&str> for Failure {
    fn from(what: &str) -> Failure {
        Failure::new(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_kept_typed_and_said() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let failure = Failure::caused_by("segment 3", io);
        assert_eq!(failure.to_string(), "segment 3: No space left on device");
        assert_eq!(failure.what(), "segment 3");
        assert_eq!(
            failure.cause::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::StorageFull)
        );
        assert!(failure.source().is_some());
        assert!(Failure::new("the log writer has stopped")
            .source()
            .is_none());
        assert_eq!(failure.clone(), failure);
    }
}
