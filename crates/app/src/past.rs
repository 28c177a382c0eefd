//! Views of a past `as_of` or `known_at`, equal to every pathway evaluated
//! afresh from its history as of that date and as known at that moment
//! (the same pure functions of the same events, so a past view equals what
//! the service showed then), without reading most histories.
//!
//! Which pathways can differ from the projection's state at all: only
//! those with an event dated after the view's date (or naming a later
//! date: a declined offer's, an ECAD), and, for a `known_at`, those with a
//! record after the last position recorded by then. Every other pathway's
//! state is the projection's own moved to the date
//! ([`openptl_rules::PathwayState::moved_to`], exact once its events are
//! settled: [`openptl_rules::pathway::Settled`]); one whose first event is after the date did not
//! exist yet. Only the rest are read back from the log and evaluated, on
//! every core. A view that shows only some pathways (the PTL, a period's
//! report) moves only those it can show.
//!
//! The work runs off the async workers and outside the projection's lock
//! (under it, only the packed states to move are copied), one such view at
//! a time with a bounded queue behind it.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_rules::{PtlRow, RulesConfig};

use crate::evaluate::{current_of, Current};
use crate::fold::{fold_pathways, par_filter_map};
use crate::packed::{Packed, Packer};
use crate::projection::ProjectionData;
use crate::{App, AppError, Failure};

/// The pathways a past view may show, of those whose states move: a view
/// passes over the others (their moved states would count nothing in it).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shown {
    /// Every pathway.
    All,
    /// Those holding a date in the window (first and last day): a report
    /// over a period inside it counts no other
    /// ([`openptl_rules::PathwayState::date_span`]).
    Holding(NaiveDate, NaiveDate),
    /// Those on the PTL: a moved state runs a clock on the view's date
    /// exactly when it does today.
    OnPtl,
    /// Those on the PTL or holding a date in the window (the weekly return:
    /// the waiting list at the week's end and what happened in the week).
    OnPtlOrHolding(NaiveDate, NaiveDate),
}

impl Shown {
    /// Those holding a date in `period`.
    pub(crate) fn period(period: openptl_rules::Period) -> Shown {
        Shown::Holding(period.first_day(), period.last_day())
    }

    /// The window today's states are read through (today's view of
    /// [`App::with_states`]).
    pub(crate) fn window(self) -> Option<(NaiveDate, NaiveDate)> {
        match self {
            Shown::Holding(first, last) => Some((first, last)),
            Shown::All | Shown::OnPtl | Shown::OnPtlOrHolding(..) => None,
        }
    }

    fn shows(self, packed: &Packed, on_ptl: impl FnOnce() -> bool) -> bool {
        let holds = |first: NaiveDate, last: NaiveDate| {
            let (earliest, latest) = packed.span();
            latest >= first && earliest <= last
        };
        match self {
            Shown::All => true,
            Shown::Holding(first, last) => holds(first, last),
            Shown::OnPtl => on_ptl(),
            Shown::OnPtlOrHolding(first, last) => holds(first, last) || on_ptl(),
        }
    }
}

/// What a past view takes of the projection under its lock: copies of the
/// packed states it moves, and the positions of the pathways it reads back.
pub(crate) struct Snapshot {
    /// States to move to the view's date, with the date they were
    /// evaluated on.
    moved: Vec<(Arc<str>, Packed)>,
    evaluated_on: NaiveDate,
    /// Pathways to evaluate from their histories.
    read: Vec<(Arc<str>, crate::positions::Positions)>,
    /// The position the pathways were projected to.
    position: u64,
}

impl Snapshot {
    /// How many states move and how many histories are read.
    pub(crate) fn sizes(&self) -> (usize, usize) {
        (self.moved.len(), self.read.len())
    }
}

/// Splits the projected pathways for a view as of `as_of`, as known at the
/// moment the log's position `known_to` was recorded by (`None`: known
/// now): each pathway's state moves, is left out (it did not exist yet,
/// or the view cannot show it), or is read back.
pub(crate) fn snapshot(
    data: &ProjectionData,
    as_of: NaiveDate,
    known_to: Option<u64>,
    shown: Shown,
    reading_all: bool,
) -> Snapshot {
    if reading_all {
        return snapshot_reading_all(data);
    }
    let started = std::time::Instant::now();
    let evaluated_on = data.today;
    let mut moved = Vec::new();
    let mut read = Vec::new();
    for (id, entry) in &data.pathways {
        let Some(last) = entry.positions.last() else {
            continue;
        };
        let known_whole = known_to.is_none_or(|to| last <= to);
        if !known_whole {
            // Nothing of it known then: it did not exist yet.
            let first = entry.positions.to_vec().first().copied().unwrap_or(last);
            if known_to.is_some_and(|to| first > to) {
                continue;
            }
            read.push((id.clone(), entry.positions.clone()));
            continue;
        }
        let settled = entry.state.as_ref().and_then(|p| Some((p, p.settled()?)));
        match (settled, evaluated_on) {
            (Some((_, settled)), _) if as_of < settled.first => {}
            (Some((packed, settled)), Some(on)) if settled.covers(on, as_of) => {
                if shown.shows(packed, || data.on_ptl(id)) {
                    moved.push((id.clone(), packed.clone()));
                }
            }
            _ => read.push((id.clone(), entry.positions.clone())),
        }
    }
    tracing::debug!(
        ms = started.elapsed().as_millis() as u64,
        "past view split under the projection's lock"
    );
    Snapshot {
        moved,
        evaluated_on: evaluated_on.unwrap_or(as_of),
        read,
        position: data.position,
    }
}

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

    /// Evaluates a snapshot off the async workers and outside the
    /// projection's lock, one such view at a time: every state it moves and
    /// every history it reads, as of `as_of` and as known at `known_at`.
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
        let projection = self.projection.clone();
        let runtime = tokio::runtime::Handle::current();
        let started = std::time::Instant::now();
        let (moved, read) = snapshot.sizes();
        let result = tokio::task::spawn_blocking(move || {
            // The turn is the blocking work's, not the request's: a request
            // dropped by its timeout does not let the next view start while
            // this one still runs.
            let _turn = turn;
            let _queued = queued;
            let moved = move_all(&snapshot, projection.packer(), as_of, &config)?;
            let moved_after = started.elapsed();
            let mut read = read_all(&snapshot, log.as_ref(), &runtime, as_of, known_at, &config)?;
            read.extend(moved);
            Ok::<_, AppError>((read, moved_after))
        })
        .await
        .map_err(|e| AppError::Internal(Failure::caused_by("evaluating a past view failed", e)))?;
        let millis = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.slow_last_millis.store(millis, Ordering::Relaxed);
        let (evaluated, moved_after) = result?;
        tracing::debug!(
            moved,
            read,
            moving_ms = moved_after.as_millis() as u64,
            ms = millis,
            "past view evaluated"
        );
        Ok(evaluated)
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

/// The snapshot's moved states as of `as_of`, unpacked and moved on every
/// core.
fn move_all(
    snapshot: &Snapshot,
    packer: &Packer,
    as_of: NaiveDate,
    config: &RulesConfig,
) -> Result<Vec<(Arc<str>, Current)>, AppError> {
    let chunks: Vec<&[(Arc<str>, Packed)]> = snapshot.moved.chunks(4096).collect();
    let moved = par_filter_map(&chunks, |chunk| {
        let mut out = Vec::with_capacity(chunk.len());
        for (id, packed) in *chunk {
            let current = match packer.current(packed) {
                Ok(current) => current,
                Err(e) => return Some(Err(crate::projection::unpack_failed(e))),
            };
            let state = if as_of == snapshot.evaluated_on {
                current.state
            } else {
                current.state.moved_to(as_of)
            };
            let row = PtlRow::of(&state, config).map(Box::new);
            out.push((
                id.clone(),
                Current {
                    state,
                    row,
                    version: current.version,
                },
            ));
        }
        Some(Ok(out))
    });
    let mut all = Vec::with_capacity(snapshot.moved.len());
    for chunk in moved {
        all.extend(chunk?);
    }
    Ok(all)
}

/// Evaluates the snapshot's read pathways as of a date and moment, reading
/// the log in place on every core (pathways in the order of their first
/// records, so reads go forwards).
fn read_all(
    snapshot: &Snapshot,
    log: &dyn openptl_log::EventLog,
    runtime: &tokio::runtime::Handle,
    as_of: NaiveDate,
    known_at: Option<DateTime<Utc>>,
    config: &RulesConfig,
) -> Result<Vec<(Arc<str>, Current)>, AppError> {
    let mut pathways: Vec<crate::fold::PathwayRecords> = snapshot
        .read
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

/// Every pathway read back, none moved: the full re-evaluation, kept as
/// the oracle the tests compare the fast past views with.
fn snapshot_reading_all(data: &ProjectionData) -> Snapshot {
    Snapshot {
        moved: Vec::new(),
        evaluated_on: data.today.unwrap_or_default(),
        read: data
            .pathways
            .iter()
            .map(|(id, entry)| (id.clone(), entry.positions.clone()))
            .collect(),
        position: data.position,
    }
}

#[cfg(test)]
mod tests;
