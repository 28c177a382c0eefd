//! Running a view's work off the async workers (issue 22): every view that
//! reads many pathways (the PTL page, the aggregates, past views, the
//! gauges of `/metrics`) computes on Tokio's blocking threads, a bounded
//! number at a time, so `/healthz`, `/readyz` and appends keep their
//! workers whatever the views cost. The projection's lock is taken inside
//! the blocking work and never held across an `.await`. What a view leaves
//! behind in bulk is freed on a thread of its own ([`drop_later`]).

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::{App, AppError, Failure};

/// View computations that may run at once: one per core, at least two (a
/// view unpacking states uses every core, so more would only queue inside
/// the kernel instead of here).
pub(crate) fn view_slots() -> Arc<Semaphore> {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    Arc::new(Semaphore::new(cores.max(2)))
}

impl App {
    /// Runs `work` on a blocking thread once a view slot is free, and gives
    /// its result back to the calling task (a view's computation, or the
    /// writing of a large response body from it).
    pub async fn off_workers<R: Send + 'static>(
        &self,
        work: impl FnOnce() -> R + Send + 'static,
    ) -> Result<R, AppError> {
        let slot = self
            .view_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppError::internal("the view slots closed"))?;
        tokio::task::spawn_blocking(move || {
            // The slot is the work's: a request dropped by its timeout does
            // not free it while the work still runs.
            let _slot = slot;
            work()
        })
        .await
        .map_err(|e| AppError::Internal(Failure::caused_by("a view's computation failed", e)))
    }
}

impl App {
    /// A stand-in view computation that holds its thread for `duration`,
    /// through the same gate as every view: for the liveness test (on an
    /// async worker, it would stall `/healthz` for that long).
    #[doc(hidden)]
    pub async fn stand_in_view(&self, duration: std::time::Duration) -> Result<(), AppError> {
        self.off_workers(move || std::thread::sleep(duration)).await
    }
}

/// Drops `garbage` on a thread of its own (a past view's states, a month's
/// CWT lines once written: freeing hundreds of thousands of them takes a
/// large share of the view's time, which its caller need not wait for); on
/// this one if no thread starts.
pub fn drop_later<T: Send + 'static>(garbage: T) {
    // A thread that does not start drops its closure, and `garbage`, here.
    let _ = std::thread::Builder::new()
        .name("view-drop".into())
        .spawn(move || drop(garbage));
}
