//! The application layer between HTTP (or any other way in) and the log:
//! appending events the rules accept, and reading pathways back as views.
//! It knows no HTTP; its errors say what went wrong, the HTTP crate says how
//! to report it.

mod append;
mod clock;
mod error;
mod read;

use std::sync::Arc;

use openptl_log::EventLog;
use openptl_rules::RulesConfig;

pub use append::{AppendOutcome, AppendedEvent, MAX_BATCH};
pub use clock::{london_today, Clock, FixedClock, SystemClock};
pub use error::AppError;
pub use read::{Amendment, EventView, PathwayQuery, PathwayView};

const PATHWAY_LOCK_STRIPES: usize = 4096;

/// Everything a request needs: the log, the rules configuration, the clock.
pub struct App {
    pub log: Arc<dyn EventLog>,
    pub config: Arc<RulesConfig>,
    pub clock: Arc<dyn Clock>,
    /// Pathway locks (striped): appends to one pathway on this node take turns,
    /// so they check against an up-to-date history instead of racing and
    /// retrying. Other nodes (PostgreSQL mode) are still caught by the log's
    /// expected-version check.
    pathway_locks: Vec<tokio::sync::Mutex<()>>,
}

impl App {
    pub fn new(log: Arc<dyn EventLog>, config: RulesConfig, clock: Arc<dyn Clock>) -> App {
        let pathway_locks = (0..PATHWAY_LOCK_STRIPES)
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        App {
            log,
            config: Arc::new(config),
            clock,
            pathway_locks,
        }
    }

    /// The service's date: today in Europe/London.
    pub fn today(&self) -> chrono::NaiveDate {
        london_today(self.clock.now())
    }
}
