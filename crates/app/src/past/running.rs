//! How a past view runs: the position known at its moment, its split of
//! the projection, and the gate that lets one such view evaluate at a time
//! off the async workers, with a bounded queue behind it.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use super::states::At;
use super::{Counted, PastStates, Shown, Snapshot, Split};
use crate::{App, AppError, Failure};

impl App {
    /// Makes past views read every pathway's history (`true`: the full
    /// re-evaluation, as before issue 22) or move the states they can.
    /// For tests and the benchmark, which compare the two.
    #[doc(hidden)]
    pub fn set_past_views_read_all(&self, on: bool) {
        self.past_views_read_all
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn past_views_read_all(&self) -> bool {
        self.past_views_read_all
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How a view as of `as_of`, known at `known_at`, of the pathways
    /// `shown` splits the projection (for a moment, the last position
    /// recorded by then is found first, outside the lock).
    pub(crate) async fn past_split(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        shown: Shown,
    ) -> Result<Split, AppError> {
        let known_to = self.known_to(known_at).await?;
        Ok(self.split_known_to(as_of, known_at, known_to, shown))
    }

    /// The last position recorded by `known_at` (`None`: known now).
    pub(crate) async fn known_to(
        &self,
        known_at: Option<DateTime<Utc>>,
    ) -> Result<Option<u64>, AppError> {
        match known_at {
            Some(at) => Ok(Some(
                self.position_known_at(at, self.projection.position())
                    .await?,
            )),
            None => Ok(None),
        }
    }

    /// [`App::past_split`] with the last position recorded by `known_at`
    /// found already (`known_to`).
    pub(crate) fn split_known_to(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        known_to: Option<u64>,
        shown: Shown,
    ) -> Split {
        Split {
            as_of,
            known_at,
            known_to,
            shown,
            read_all: self.past_views_read_all(),
            counted: Counted::Nothing,
            recorded: None,
            site: None,
        }
    }

    /// The last log position recorded at or before `at`, at most `upto`:
    /// every record up to it was known then (`recorded_at` never goes back
    /// along the log), so a pathway with no record after it is known whole.
    pub(crate) async fn position_known_at(
        &self,
        at: DateTime<Utc>,
        upto: u64,
    ) -> Result<u64, AppError> {
        let recorded_by = |position: u64| async move {
            let records = self.log.read_positions(&[position]).await?;
            Ok::<bool, AppError>(records.first().is_some_and(|r| r.recorded_at <= at))
        };
        if upto == 0 || recorded_by(upto).await? {
            return Ok(upto);
        }
        // Recorded by `at`: every position up to `known`; not: `unknown`.
        let (mut known, mut unknown) = (0, upto);
        while unknown - known > 1 {
            let mid = known + (unknown - known) / 2;
            if recorded_by(mid).await? {
                known = mid;
            } else {
                unknown = mid;
            }
        }
        Ok(known)
    }

    /// Runs `consume` over the states of a snapshot as of `as_of`, as
    /// known at `known_at` ([`PastStates`]), off the async workers and
    /// outside the projection's lock, one such view at a time.
    pub(crate) async fn in_past_view<R: Send + 'static>(
        &self,
        snapshot: Snapshot,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        consume: impl FnOnce(&mut PastStates<'_>) -> R + Send + 'static,
    ) -> Result<R, AppError> {
        use std::sync::atomic::Ordering;
        // A bounded queue: with one running and `past_view_queue` waiting,
        // refuse now (the caller retries) instead of piling up requests and
        // snapshots. The count holds until the evaluation itself ends.
        let waiting = self.slow_waiting.fetch_add(1, Ordering::SeqCst);
        let queued = Queued(self.slow_waiting.clone());
        if waiting > self.past_view_queue {
            let last = self.slow_last_millis.load(Ordering::Relaxed);
            // Every view ahead of it, at the last one's pace, in seconds.
            let retry_after = (last.saturating_mul(waiting as u64 + 1) / 1000).clamp(1, 60);
            return Err(AppError::Busy { retry_after });
        }
        let turn = self
            .slow_views
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AppError::internal("the slow-view gate closed"))?;
        let started = std::time::Instant::now();
        // The turn is the blocking work's, not the request's: a request
        // dropped by its timeout does not let the next view start while
        // this one still runs.
        let result = self
            .evaluate_snapshot(snapshot, as_of, known_at, (turn, queued), consume)
            .await;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.slow_last_millis.store(millis, Ordering::Relaxed);
        result
    }

    /// Runs `consume` over the states of a snapshot as of `as_of`, as
    /// known at `known_at` ([`PastStates`]), on a blocking thread (and
    /// every core) outside the projection's lock, holding `guard` until
    /// it ends.
    pub(crate) async fn evaluate_snapshot<R: Send + 'static>(
        &self,
        snapshot: Snapshot,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        guard: impl Send + 'static,
        consume: impl FnOnce(&mut PastStates<'_>) -> R + Send + 'static,
    ) -> Result<R, AppError> {
        let config = self.config.clone();
        let log = self.log.clone();
        let projection = self.projection.clone();
        let runtime = tokio::runtime::Handle::current();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let at = At {
                as_of,
                known_at,
                config: &config,
                packer: projection.packer(),
            };
            let mut snapshot = snapshot;
            if let Some(store) = projection.replaced() {
                snapshot.take_replaced(store);
            }
            let kept = snapshot.kept.take();
            let (moved, read) = snapshot.sizes();
            tracing::debug!(
                moved,
                read,
                "past view states to move and histories to read"
            );
            let mut states = PastStates::new(&snapshot, log.as_ref(), &runtime, at, kept)?;
            let started = std::time::Instant::now();
            let out = consume(&mut states);
            // Where the time went: the states (moved or read, on every
            // core) and what the view made of them.
            let took = started.elapsed();
            tracing::debug!(
                states_ms = states.stepping.as_millis() as u64,
                view_ms = took.saturating_sub(states.stepping).as_millis() as u64,
                "past view states and view"
            );
            let failed = states.failed.take();
            drop(states);
            // The states' copies and the kept states' files, unmapped, are
            // freed after the answer, not before it (some 30 ms at 1.4M
            // pathways a month back: decision 208).
            crate::offload::drop_later(snapshot);
            match failed {
                Some(e) => Err(e),
                None => Ok(out),
            }
        })
        .await
        .map_err(|e| AppError::Internal(Failure::caused_by("evaluating a past view failed", e)))?;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::debug!(ms = millis, "past view evaluated");
        result
    }
}

/// A past-date view counted as in the gate (waiting or running) until its
/// evaluation ends or it is dropped while waiting.
struct Queued(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
