//! The application layer between HTTP (or any other way in) and the log:
//! appending events the rules accept, and reading pathways back as views.
//! It knows no HTTP; its errors say what went wrong, the HTTP crate says how
//! to report it.

pub mod access;
mod aggregates;
pub mod anchoring;
mod append;
pub mod audit;
pub mod auth;
pub mod breach_risk;
mod clock;
mod clocks;
pub mod connections;
mod cwt_lines;
mod error;
mod evaluate;
mod fit;
mod fold;
pub mod forecast;
#[cfg(test)]
mod histories;
mod lists;
mod metrics;
mod milestone_list;
mod new_day;
mod offload;
mod packed;
mod past;
mod past_cells;
mod pathway_key;
mod positions;
pub mod problem;
pub mod projection;
pub mod proxies;
mod ptl_index;
mod ptl_page;
mod read;
mod snapshot;
pub mod tokens;
mod varint;
mod views;

use std::sync::Arc;

use openptl_log::EventLog;
use openptl_rules::RulesConfig;

pub use append::{AppendOutcome, AppendedEvent, MAX_BATCH};
pub use clock::{london_today, Clock, FixedClock, SystemClock};
pub use clocks::ClockLine;
pub use cwt_lines::{CwtLine, CwtLines, CwtPlace};
pub use error::AppError;
pub use evaluate::decode;
pub use fold::par_batches;
pub use lists::Page;
pub use metrics::Metrics;
pub use milestone_list::{MilestonePathway, MilestoneQuery, MILESTONE_COLUMNS};
pub use offload::drop_later;
pub use openptl_log::Failure;
pub use problem::{ApiError, Kind, Limited, Problem};
pub use projection::{MemoryUse, Projection};
pub use ptl_page::*;
pub use read::{Amendment, EventView, PathwayQuery, PathwayView};
pub use views::*;

const PATHWAY_LOCK_STRIPES: usize = 4096;

/// Requests per second a token may sustain by default (bursts of twice
/// that): far above any person, high enough for an integration engine.
pub const DEFAULT_RATE_LIMIT: f64 = 2000.0;

/// Past-date views (`as_of`, `known_at`) that may wait while one runs; more
/// are refused as `Busy` (429) rather than queued without bound.
pub const DEFAULT_PAST_VIEW_QUEUE: usize = 4;

/// How often the projection snapshot is rewritten while the log moves on.
pub const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

/// How far behind the log the views may be and still count as ready.
const READY_LAG: std::time::Duration = std::time::Duration::from_secs(5);

/// Everything a request needs: the log, the rules configuration, the clock.
pub struct App {
    pub(crate) log: Arc<dyn EventLog>,
    pub(crate) config: Arc<RulesConfig>,
    pub(crate) clock: Arc<dyn Clock>,
    /// Every pathway's history and current state, folded from the log.
    pub(crate) projection: Arc<Projection>,
    pub(crate) metrics: Arc<Metrics>,
    /// Bearer tokens (who may call the API).
    pub(crate) tokens: Arc<tokens::TokenStore>,
    /// Reads of patient-level data.
    pub(crate) access_log: Arc<audit::AccessLog>,
    /// Views of a past date or moment re-evaluate every pathway: one at a
    /// time, with at most `past_view_queue` more waiting (see
    /// [`App::with_past_view_queue`]).
    slow_views: Arc<tokio::sync::Semaphore>,
    /// Past-date views waiting for their turn or running now.
    slow_waiting: Arc<std::sync::atomic::AtomicUsize>,
    /// How long the last past-date view took (ms): the basis of `Retry-After`.
    slow_last_millis: std::sync::atomic::AtomicU64,
    /// View computations running or allowed to run at once off the async
    /// workers (see [`offload`]).
    view_slots: Arc<tokio::sync::Semaphore>,
    /// Past-date views that may wait for their turn (beyond it: `Busy`).
    pub(crate) past_view_queue: usize,
    /// Past views read every pathway's history instead of moving the
    /// states they can (the full re-evaluation: the oracle of the tests
    /// and the benchmark's "before").
    past_views_read_all: std::sync::atomic::AtomicBool,
    /// Requests per second each token may sustain (0: no limit).
    pub(crate) rate_limit: f64,
    /// Pathway locks (striped): appends to one pathway on this node take turns,
    /// so they check against an up-to-date history instead of racing and
    /// retrying. Other nodes (PostgreSQL mode) are still caught by the log's
    /// expected-version check.
    pathway_locks: Vec<tokio::sync::Mutex<()>>,
    /// Where `POST /v1/backup` backs the log up (`serve --backup-to`);
    /// `None`: the API does not back up. Never a path from a request.
    pub(crate) backup_to: Option<std::path::PathBuf>,
    /// Held while a backup through the API runs: one at a time.
    backing_up: Arc<tokio::sync::Mutex<()>>,
    /// Today's breach-forecast model and projections (issue 24).
    pub(crate) forecasts: forecast::ForecastCache,
    /// Held while the cells of a past date are counted to be kept
    /// (decision 202): views of a date asked for together wait for one
    /// count.
    counting_kept_day: tokio::sync::Mutex<()>,
}

/// What the ways in (HTTP, gRPC, the binary) read of the application:
/// the parts it is made of, never to be replaced from outside.
impl App {
    /// The event log.
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.log
    }

    /// The rules configuration.
    pub fn config(&self) -> &Arc<RulesConfig> {
        &self.config
    }

    /// The clock ("now" and London's today).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Every pathway's state, folded from the log (its small public API).
    pub fn projection(&self) -> &Arc<Projection> {
        &self.projection
    }

    /// Counters and gauges for `/metrics`.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Bearer tokens (who may call the API).
    pub fn tokens(&self) -> &Arc<tokens::TokenStore> {
        &self.tokens
    }

    /// Reads of patient-level data.
    pub fn access_log(&self) -> &Arc<audit::AccessLog> {
        &self.access_log
    }

    /// Requests per second each token may sustain (0: no limit).
    pub fn rate_limit(&self) -> f64 {
        self.rate_limit
    }
}

impl App {
    /// Opens the application on a log and starts the projection runner
    /// (which needs a tokio runtime and stops when the App is dropped).
    pub fn new(log: Arc<dyn EventLog>, config: RulesConfig, clock: Arc<dyn Clock>) -> App {
        App::open(log, config, clock, None)
    }

    /// As [`App::new`], with the projection restored from the snapshot at
    /// `snapshot_path` when it fits this log (folding the log otherwise) and
    /// written there every [`SNAPSHOT_EVERY`] while the log moves on.
    pub fn open(
        log: Arc<dyn EventLog>,
        config: RulesConfig,
        clock: Arc<dyn Clock>,
        snapshot_path: Option<std::path::PathBuf>,
    ) -> App {
        Self::open_preloaded(log, config, clock, snapshot_path, None)
    }

    /// As [`App::open`], restoring from a snapshot already being read (see
    /// [`projection::SnapshotPreload`], started before the log was opened).
    pub fn open_preloaded(
        log: Arc<dyn EventLog>,
        config: RulesConfig,
        clock: Arc<dyn Clock>,
        snapshot_path: Option<std::path::PathBuf>,
        preload: Option<projection::SnapshotPreload>,
    ) -> App {
        let pathway_locks = (0..PATHWAY_LOCK_STRIPES)
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        let config = Arc::new(config);
        let snapshots = snapshot_path.is_some();
        let projection = Arc::new(Projection::new(config.clone(), log.clone(), snapshot_path));
        if let Some(preload) = preload {
            projection.use_preload(preload);
        }
        tokio::spawn(projection::run(
            Arc::downgrade(&projection),
            log.clone(),
            clock.clone(),
        ));
        if snapshots {
            tokio::spawn(projection::snapshot_periodically(
                Arc::downgrade(&projection),
                SNAPSHOT_EVERY,
            ));
        }
        App {
            log,
            config,
            clock,
            projection,
            metrics: Arc::new(Metrics::new()),
            tokens: Arc::new(tokens::TokenStore::in_memory()),
            access_log: Arc::new(audit::AccessLog::in_memory()),
            slow_views: Arc::new(tokio::sync::Semaphore::new(1)),
            slow_waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            slow_last_millis: std::sync::atomic::AtomicU64::new(0),
            view_slots: offload::view_slots(),
            past_view_queue: DEFAULT_PAST_VIEW_QUEUE,
            past_views_read_all: std::sync::atomic::AtomicBool::new(false),
            rate_limit: DEFAULT_RATE_LIMIT,
            pathway_locks,
            backup_to: None,
            backing_up: Arc::default(),
            forecasts: forecast::ForecastCache::default(),
            counting_kept_day: tokio::sync::Mutex::new(()),
        }
    }

    /// Keeps tokens in `store` (default: in memory, empty).
    pub fn with_tokens(mut self, store: tokens::TokenStore) -> App {
        self.tokens = Arc::new(store);
        self
    }

    /// Lets `POST /v1/backup` back the log up into `dir`.
    pub fn with_backup_to(mut self, dir: std::path::PathBuf) -> App {
        self.backup_to = Some(dir);
        self
    }

    /// Backs the log up into [`App::backup_to`] while appends go on (issue
    /// 27): one backup at a time; a second one meanwhile is `Busy`.
    pub async fn backup(&self) -> Result<openptl_log::segment::BackupReport, AppError> {
        let Some(to) = self.backup_to.clone() else {
            return Err(AppError::NotConfigured(
                "backups through the API are off: start the service with --backup-to DIR".into(),
            ));
        };
        let Ok(turn) = self.backing_up.clone().try_lock_owned() else {
            return Err(AppError::Busy { retry_after: 60 });
        };
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let started = std::time::Instant::now();
            let outcome = log.backup(&to, &mut |step| tracing::info!(?step, "backup"));
            match outcome {
                None => Err(AppError::NotConfigured(
                    "this store is backed up by its database (PostgreSQL: pg_basebackup and point-in-time recovery; docs/operations.md)".into(),
                )),
                Some(Err(e)) => {
                    tracing::error!(error = %e, "the backup did not finish");
                    Err(AppError::BackupFailed(match e {
                        openptl_log::LogError::Storage(failure) => failure,
                        other => openptl_log::Failure::caused_by("the backup", other),
                    }))
                }
                Some(Ok(report)) => {
                    tracing::info!(
                        position = report.position,
                        segments_copied = report.segments_copied,
                        bytes = report.bytes_copied,
                        ms = started.elapsed().as_millis() as u64,
                        "backup done"
                    );
                    Ok(report)
                }
            }
        })
        .await
        .map_err(|e| AppError::Internal(Failure::caused_by("the backup panicked", e)))?
    }

    /// Sets the per-token rate limit (requests per second; 0: none).
    pub fn with_rate_limit(mut self, per_second: f64) -> App {
        self.rate_limit = per_second.max(0.0);
        self
    }

    /// Sets how many past-date views may wait while one runs (default
    /// [`DEFAULT_PAST_VIEW_QUEUE`]; 0: none wait, a second is refused).
    pub fn with_past_view_queue(mut self, waiting: usize) -> App {
        self.past_view_queue = waiting;
        self
    }

    /// Past-date views waiting for their turn or running now.
    pub fn past_views_waiting(&self) -> usize {
        self.slow_waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Takes the past-date views' turn and keeps it until the permit is
    /// dropped: for tests of the queue (a stand-in for a long evaluation).
    #[doc(hidden)]
    pub async fn hold_past_view_turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.slow_views
            .clone()
            .acquire_owned()
            .await
            .expect("the past-view gate is never closed")
    }

    /// Writes the access log to `log` (default: in memory only).
    pub fn with_access_log(mut self, log: audit::AccessLog) -> App {
        self.access_log = Arc::new(log);
        self
    }

    /// Records a read of patient-level data, before it is answered. While
    /// the file cannot be written its lines wait in memory; a read whose
    /// line cannot even wait is refused (decision 194).
    pub fn audit(
        &self,
        principal: &access::Principal,
        action: &str,
        pathway_id: Option<&str>,
        rows: Option<usize>,
    ) -> Result<(), AppError> {
        let entry = audit::AccessEntry {
            at: self.clock.now(),
            actor: principal.actor.clone(),
            role: principal.role.as_str().to_string(),
            action: action.to_string(),
            pathway_id: pathway_id.map(str::to_string),
            rows,
        };
        match self.access_log.record(entry) {
            Ok(audit::Recorded::Written) => Ok(()),
            Ok(audit::Recorded::Waiting {
                pending,
                first,
                error,
            }) => {
                self.metrics.access_log_errors.inc();
                if first {
                    tracing::error!(error = %error, action, "the access log could not be written; its lines wait in memory until it can");
                } else {
                    tracing::debug!(error = %error, pending_bytes = pending, "an access log line waits");
                }
                Ok(())
            }
            Err(e) => {
                self.metrics.access_log_errors.inc();
                tracing::error!(error = %e, action, "the access log could not be written and its lines waiting in memory reached their limit; the read is refused");
                Err(AppError::AuditUnavailable(Failure::caused_by(
                    "writing the access log",
                    e,
                )))
            }
        }
    }

    /// Whether every view shows the whole log (SPEC 4.4 `/readyz`).
    /// Ready: start-up folding is over, the projection is not stuck, the log
    /// takes appends, and it
    /// is at most 5 seconds behind (under load it always trails the head by
    /// a few milliseconds, which must not flap readiness).
    pub fn ready(&self) -> bool {
        let p = &self.projection;
        p.failure().is_none()
            && self.log.damage().is_none()
            && self.log.unavailable().is_none()
            && (p.position() >= self.log.head()
                || (p.has_caught_up() && p.behind_for() < READY_LAG))
    }

    /// Writes a projection snapshot now (on shutdown, say): `None` when the
    /// App has no snapshot path or nothing settled to write.
    pub async fn write_snapshot(&self) -> Result<Option<projection::SnapshotWritten>, AppError> {
        let projection = self.projection.clone();
        tokio::task::spawn_blocking(move || projection.write_snapshot())
            .await
            .map_err(|e| {
                AppError::Internal(Failure::caused_by("writing the snapshot panicked", e))
            })?
    }

    /// Waits until the projection has caught up with the log as it is now
    /// (bounded); false if it did not in time.
    pub async fn caught_up(&self, limit: std::time::Duration) -> bool {
        self.projection.wait_for(self.log.head(), limit).await
    }

    /// Waits, up to `limit`, until the states the projection replaced are
    /// kept for every record of the last days (after a fold from the log
    /// they are written afresh in the background, decision 162): whether
    /// they are (`true` when none are kept at all).
    pub async fn replaced_states_ready(&self, limit: std::time::Duration) -> bool {
        let started = std::time::Instant::now();
        loop {
            let ready = self.projection.replaced().is_none_or(|s| s.is_complete());
            if ready || started.elapsed() >= limit {
                return ready;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// The service's date: today in Europe/London.
    pub fn today(&self) -> chrono::NaiveDate {
        london_today(self.clock.now())
    }
}
