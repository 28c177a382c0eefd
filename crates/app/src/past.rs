//! Views of a past `as_of` or `known_at`: every pathway evaluated afresh
//! from its history (the same pure functions of the same events, so a
//! past view equals what the service showed then), off the async workers
//! and outside the projection's lock, one such view at a time with a
//! bounded queue behind it.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};

use crate::evaluate::{current_of, Current};
use crate::fold::fold_pathways;
use crate::projection::ProjectionData;
use crate::{App, AppError, Failure};

impl App {
    /// Evaluates a snapshot of every pathway off the async workers and
    /// outside the projection's lock, one such view at a time (a past view
    /// costs seconds on a large alliance; appends and today's views go on).
    pub(crate) async fn evaluate_snapshot(
        &self,
        snapshot: Snapshot,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
    ) -> Result<Vec<(Arc<str>, Current)>, AppError> {
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
        let config = self.config.clone();
        let log = self.log.clone();
        let runtime = tokio::runtime::Handle::current();
        let started = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            // The turn is the blocking work's, not the request's: a request
            // dropped by its timeout does not let the next view start while
            // this one still runs.
            let _turn = turn;
            let _queued = queued;
            evaluate_all(&snapshot, log.as_ref(), &runtime, as_of, known_at, &config)
        })
        .await
        .map_err(|e| AppError::Internal(Failure::caused_by("evaluating a past view failed", e)))?;
        self.slow_last_millis.store(
            u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
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

/// Every pathway with the positions of its records (packed), and the
/// position the pathways were projected to: cheap to take under the
/// projection's lock.
pub(crate) struct Snapshot {
    pathways: Vec<(Arc<str>, crate::positions::Positions)>,
    position: u64,
}

/// Evaluates every pathway of a snapshot as of a date and moment, reading
/// the log in place on every core (pathways in the order of their first
/// records, so reads go forwards).
fn evaluate_all(
    snapshot: &Snapshot,
    log: &dyn openptl_log::EventLog,
    runtime: &tokio::runtime::Handle,
    as_of: NaiveDate,
    known_at: Option<DateTime<Utc>>,
    config: &openptl_rules::RulesConfig,
) -> Result<Vec<(Arc<str>, Current)>, AppError> {
    let mut pathways: Vec<crate::fold::PathwayRecords> = snapshot
        .pathways
        .iter()
        .map(|(id, positions)| (id.clone(), positions.to_vec()))
        .filter(|(_, positions)| !positions.is_empty())
        .collect();
    pathways.sort_unstable_by_key(|(_, positions)| positions[0]);
    let evaluated = fold_pathways(log, runtime, snapshot.position, &pathways, |id, history| {
        current_of(history?, as_of, known_at, config).map(|c| (id.clone(), c))
    })?;
    Ok(evaluated.into_iter().flatten().collect())
}

/// Every pathway's id and positions, cheap to take.
pub(crate) fn snapshot(data: &ProjectionData) -> Snapshot {
    Snapshot {
        pathways: data
            .pathways
            .iter()
            .map(|(id, p)| (id.clone(), p.positions.clone()))
            .collect(),
        position: data.position,
    }
}
