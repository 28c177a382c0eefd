//! The projection: every pathway's history, folded from the global log into
//! memory, with its state as of today and its PTL row kept ready.
//!
//! One runner task follows the log (catch-up with `read_all`, then live on
//! the head watch) and is the only writer. Everything a view shows is a pure
//! function of (the events up to the projected position, as_of, known_at), so
//! dropping the projection and folding again from position 0 gives the same
//! views. Appends check new events against the histories held here, and
//! answer only once their own events are projected (read-your-writes).
//!
//! Invariants:
//! - `position` is published only after every pathway touched up to it has
//!   its `current` state re-evaluated: a reader that waited for a position
//!   sees the state after it.
//! - `current` is the state as of `today` (Europe/London) and known now; the
//!   runner re-evaluates every pathway when the date changes.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_log::{EventLog, StoredRecord, Subscription};
use openptl_rules::{
    effective_events, evaluate, history, EventData, EventType, PathwayState, PtlRow, RecordedEvent,
    RulesConfig,
};
use tokio::sync::watch;

use crate::clock::{london_today, Clock};
use crate::views::{PtlIndexEntry, PtlKeys};
use crate::AppError;

/// Records read from the log per step of the runner.
const CHUNK: usize = 8192;

/// A pathway's state as of the projection's `today`, and its PTL row.
#[derive(Debug)]
pub struct Current {
    pub state: PathwayState,
    pub row: Option<PtlRow>,
    /// The number of events the state was evaluated from.
    pub version: u64,
}

/// Who stored an event and where.
#[derive(Debug, Clone)]
pub struct EventMeta {
    pub actor: Arc<str>,
    pub position: u64,
}

/// One pathway: its full history (record order) and current state.
#[derive(Debug)]
pub struct PathwayEntry {
    pub id: Arc<str>,
    /// Shared so a slow view can take a snapshot and evaluate it without
    /// holding the projection's lock (an append then copies on write).
    pub history: Arc<Vec<RecordedEvent>>,
    pub meta: Vec<EventMeta>,
    /// `None` until evaluated, or when stored events no longer fit the rules
    /// (reported as an internal error when the pathway is read).
    pub current: Option<Arc<Current>>,
}

impl PathwayEntry {
    /// The pathway's state as of `as_of`, as known at `known_at`.
    pub fn evaluate(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        config: &RulesConfig,
    ) -> Result<Option<PathwayState>, AppError> {
        evaluate_history(&self.history, as_of, known_at, config)
    }

    /// How many events were known at `known_at`.
    pub fn version_at(&self, known_at: Option<DateTime<Utc>>) -> u64 {
        match known_at {
            Some(at) => history::known_at(&self.history, at).len() as u64,
            None => self.history.len() as u64,
        }
    }
}

/// A pathway's state from its history, as of `as_of`, as known at `known_at`.
pub fn evaluate_history(
    history: &[RecordedEvent],
    as_of: NaiveDate,
    known_at: Option<DateTime<Utc>>,
    config: &RulesConfig,
) -> Result<Option<PathwayState>, AppError> {
    let known = match known_at {
        Some(at) => history::known_at(history, at),
        None => history,
    };
    if known.is_empty() {
        return Ok(None);
    }
    let effective = effective_events(known).map_err(|e| {
        AppError::Internal(format!("pathway history no longer fits the rules: {e}"))
    })?;
    Ok(evaluate(&effective, as_of, config))
}

/// A pathway's state, PTL row and version from its history; `None` when it
/// had no referral by `as_of`, or (logged) when its history no longer fits
/// the rules.
pub fn current_of(
    history: &[RecordedEvent],
    as_of: NaiveDate,
    known_at: Option<DateTime<Utc>>,
    config: &RulesConfig,
) -> Option<Current> {
    match evaluate_history(history, as_of, known_at, config) {
        Ok(Some(state)) => {
            let row = PtlRow::of(&state, config);
            let version = match known_at {
                Some(at) => history::known_at(history, at).len() as u64,
                None => history.len() as u64,
            };
            Some(Current {
                state,
                row,
                version,
            })
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "a pathway could not be evaluated");
            None
        }
    }
}

/// `f` over every item, on every core when there are many (start-up, a new
/// day, a past view).
pub fn par_filter_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Option<R> + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if items.len() < 2048 || threads < 2 {
        return items.iter().filter_map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| {
                let f = &f;
                scope.spawn(move || part.iter().filter_map(f).collect::<Vec<_>>())
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("evaluation does not panic"))
            .collect()
    })
}

/// The projected data, behind the projection's lock.
#[derive(Debug, Default)]
pub struct ProjectionData {
    /// The last log position folded in (and evaluated, once published).
    pub position: u64,
    /// The date `current` states are evaluated on.
    pub today: Option<NaiveDate>,
    pub pathways: HashMap<Arc<str>, PathwayEntry>,
    /// The pathways on today's PTL, keys inline (dense, for fast PTL pages).
    pub ptl: Vec<PtlIndexEntry>,
    ptl_slot: HashMap<Arc<str>, usize>,
    actors: HashSet<Arc<str>>,
    dirty: HashSet<Arc<str>>,
}

/// The in-memory projection of the whole log.
pub struct Projection {
    data: RwLock<ProjectionData>,
    published: watch::Sender<u64>,
    config: Arc<RulesConfig>,
    failure: Mutex<Option<String>>,
    /// When the oldest stored record the views do not show yet was recorded
    /// (`None` when caught up): the projection lag.
    behind_since: Mutex<Option<DateTime<Utc>>>,
    /// Set once the runner has first reached the head of the log.
    caught_up_once: std::sync::atomic::AtomicBool,
}

impl Projection {
    pub fn new(config: Arc<RulesConfig>) -> Projection {
        Projection {
            data: RwLock::new(ProjectionData::default()),
            published: watch::Sender::new(0),
            config,
            failure: Mutex::new(None),
            behind_since: Mutex::new(None),
            caught_up_once: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Read access to the projected data.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, ProjectionData> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ProjectionData> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The last position whose effects every view shows.
    pub fn position(&self) -> u64 {
        *self.published.borrow()
    }

    /// Waits (at most `limit`) until `position` is projected; false on timeout.
    pub async fn wait_for(&self, position: u64, limit: Duration) -> bool {
        let mut rx = self.published.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|p| *p >= position))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Why the runner is stuck, if it is.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the runner has reached the head of the log at least once
    /// (start-up folding is over).
    pub fn has_caught_up(&self) -> bool {
        self.caught_up_once
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// How long the views have been behind the log (zero when caught up).
    pub fn behind_for(&self) -> Duration {
        let since = *self.behind_since.lock().unwrap_or_else(|e| e.into_inner());
        since.map_or(Duration::ZERO, |t| {
            (Utc::now() - t).to_std().unwrap_or(Duration::ZERO)
        })
    }

    fn set_behind_since(&self, since: Option<DateTime<Utc>>) {
        *self.behind_since.lock().unwrap_or_else(|e| e.into_inner()) = since;
    }

    fn set_failure(&self, failure: Option<String>) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = failure;
    }

    /// A pathway's history (empty if unknown), for checking a new event.
    pub fn history(&self, pathway_id: &str) -> Vec<RecordedEvent> {
        self.read()
            .pathways
            .get(pathway_id)
            .map(|p| p.history.as_ref().clone())
            .unwrap_or_default()
    }

    /// Folds stored records (the next ones of the log, in order) in.
    /// They become visible to views at the next [`Projection::refresh`].
    pub fn apply(&self, records: Vec<StoredRecord>) -> Result<(), AppError> {
        let mut decoded = Vec::with_capacity(records.len());
        for record in records {
            let event = decode(&record)?;
            decoded.push((record, event));
        }
        let mut data = self.write();
        for (record, event) in decoded {
            if record.position != data.position + 1 {
                return Err(AppError::Internal(format!(
                    "projection expected position {} but the log gave {}",
                    data.position + 1,
                    record.position
                )));
            }
            data.position = record.position;
            let actor = match data.actors.get(record.actor.as_str()) {
                Some(a) => a.clone(),
                None => {
                    let a: Arc<str> = Arc::from(record.actor.as_str());
                    data.actors.insert(a.clone());
                    a
                }
            };
            let entry = data
                .pathways
                .entry(Arc::from(record.stream_id.as_str()))
                .or_insert_with_key(|id| PathwayEntry {
                    id: id.clone(),
                    history: Arc::new(Vec::new()),
                    meta: Vec::new(),
                    current: None,
                });
            Arc::make_mut(&mut entry.history).push(event);
            entry.meta.push(EventMeta {
                actor,
                position: record.position,
            });
            let id = entry.id.clone();
            data.dirty.insert(id);
        }
        Ok(())
    }

    /// Re-evaluates every pathway changed since the last refresh (all of them
    /// when the date moved on), then publishes the position.
    pub fn refresh(&self, today: NaiveDate) {
        let (dirty, position, new_day) = {
            let mut data = self.write();
            let new_day = data.today != Some(today);
            if new_day {
                let all: Vec<Arc<str>> = data.pathways.keys().cloned().collect();
                data.dirty.extend(all);
            }
            (std::mem::take(&mut data.dirty), data.position, new_day)
        };
        // Evaluate under the read lock (views keep answering), install under
        // the write lock. The runner is the only writer, so nothing changes
        // in between.
        let evaluated: Vec<(Arc<str>, Option<Arc<Current>>)> = {
            let data = self.read();
            let dirty: Vec<Arc<str>> = dirty.into_iter().collect();
            par_filter_map(&dirty, |id| {
                let entry = data.pathways.get(id)?;
                let current = current_of(&entry.history, today, None, &self.config);
                Some((id.clone(), current.map(Arc::new)))
            })
        };
        {
            let mut data = self.write();
            let ProjectionData {
                pathways,
                ptl,
                ptl_slot,
                today: today_slot,
                ..
            } = &mut *data;
            // The new date is announced together with the states evaluated on
            // it: until then, views for the new date take the slow path.
            if new_day {
                *today_slot = Some(today);
            }
            for (id, current) in evaluated {
                let Some(entry) = pathways.get_mut(&id) else {
                    continue;
                };
                entry.current = current.clone();
                let on_ptl = current.and_then(|c| {
                    let keys = PtlKeys::of(c.row.as_ref()?);
                    Some(PtlIndexEntry {
                        keys,
                        id: id.clone(),
                        version: c.version,
                        current: c,
                    })
                });
                match (on_ptl, ptl_slot.get(&id).copied()) {
                    (Some(row), Some(slot)) => ptl[slot] = row,
                    (Some(row), None) => {
                        ptl_slot.insert(id, ptl.len());
                        ptl.push(row);
                    }
                    (None, Some(slot)) => {
                        ptl.swap_remove(slot);
                        ptl_slot.remove(&id);
                        if let Some(moved) = ptl.get(slot) {
                            ptl_slot.insert(moved.id.clone(), slot);
                        }
                    }
                    (None, None) => {}
                }
            }
        }
        self.published.send_replace(position);
    }
}

/// Decodes one stored record for the rules.
pub(crate) fn decode(r: &StoredRecord) -> Result<RecordedEvent, AppError> {
    let event_type = EventType::parse(&r.event_type).ok_or_else(|| {
        AppError::Internal(format!(
            "position {}: unknown stored event type {}",
            r.position, r.event_type
        ))
    })?;
    let (occurred_on, data) =
        EventData::decode_payload(event_type, r.schema_version, &r.payload)
            .map_err(|e| AppError::Internal(format!("position {}: {e}", r.position)))?;
    Ok(RecordedEvent {
        event_id: r.event_id,
        version: r.version,
        recorded_at: r.recorded_at,
        occurred_on,
        data,
    })
}

/// Follows the log into the projection until the projection is dropped.
pub(crate) async fn run(
    projection: Weak<Projection>,
    log: Arc<dyn EventLog>,
    clock: Arc<dyn Clock>,
) {
    let Some(start) = projection.upgrade().map(|p| p.read().position + 1) else {
        return;
    };
    let mut subscription = Subscription::from(log.clone(), start, CHUNK);
    loop {
        let Some(p) = projection.upgrade() else {
            return;
        };
        if log.head() < subscription.position() {
            // Caught up: publish, and re-evaluate everything when the date changed.
            let today = london_today(clock.now());
            let stale = p.read().today != Some(today) || p.position() < p.read().position;
            if stale {
                let step = p.clone();
                let _ = tokio::task::spawn_blocking(move || step.refresh(today)).await;
            }
            p.caught_up_once
                .store(true, std::sync::atomic::Ordering::Release);
        }
        // Never hold the projection while waiting, so dropping the App ends this task.
        drop(p);
        let step = tokio::select! {
            step = subscription.next() => step,
            _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
        };
        let Some(p) = projection.upgrade() else {
            return;
        };
        let failure = match step {
            Ok(None) => return,
            Ok(Some(batch)) => {
                p.set_behind_since(batch.records.first().map(|r| r.recorded_at));
                let more = batch.more;
                let today = london_today(clock.now());
                let step = p.clone();
                let outcome = tokio::task::spawn_blocking(move || {
                    step.apply(batch.records)?;
                    // While catching up, evaluate once at the end.
                    if !more {
                        step.refresh(today);
                    }
                    Ok::<_, AppError>(())
                })
                .await;
                match outcome {
                    Ok(Ok(())) => {
                        p.set_failure(None);
                        if !more {
                            p.set_behind_since(None);
                        }
                        None
                    }
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(e) => Some(format!("projection step panicked: {e}")),
                }
            }
            Err(e) => {
                let mut since = p.behind_since.lock().unwrap_or_else(|e| e.into_inner());
                since.get_or_insert_with(Utc::now);
                drop(since);
                Some(e.to_string())
            }
        };
        if let Some(message) = failure {
            fail(&p, message);
            // Read again from what was really folded in.
            subscription = Subscription::from(log.clone(), p.read().position + 1, CHUNK);
            drop(p);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

fn fail(p: &Projection, message: String) {
    tracing::error!(error = %message, "the projection could not follow the log; retrying");
    p.set_failure(Some(message));
}
