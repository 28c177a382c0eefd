//! The projection: every pathway's state as of today (packed) and, for the
//! pathways on the PTL, their filter and sort keys, kept in memory with
//! where each pathway's records lie in the log.
//!
//! One runner task follows the log (from nothing, a rebuild in place on
//! every core; then catch-up with `read_all` and live on the head watch)
//! and is the only writer. Everything a view shows is a pure
//! function of (the events up to the projected position, as_of, known_at), so
//! dropping the projection and folding again from position 0 gives the same
//! views. Appends check new events against the pathway's history, and
//! answer only once their own events are projected (read-your-writes).
//!
//! Histories are not held: a pathway keeps the log positions of its records
//! (packed, about 3 bytes an event) and its state packed (see
//! [`crate::packed`]); its history is read back from the log when needed,
//! through a small cache of the pathways touched lately (appends come in
//! bursts on the same pathways). Re-evaluating many pathways at once (start
//! from scratch, a new day, a past view) reads the log in place on every
//! core ([`crate::fold`]).
//!
//! Invariants:
//! - `position` is published only after every pathway touched up to it has
//!   its `current` state re-evaluated: a reader that waited for a position
//!   sees the state after it.
//! - `current` is the state as of `today` (Europe/London) and known now; the
//!   runner re-evaluates every pathway when the date changes.
//! - A cached history of length n is always the first n events of its
//!   pathway; it is used only when n equals the pathway's record count.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_log::{EventLog, RecordRef, StoredRecord, Subscription};
use openptl_rules::{
    effective_events, evaluate, history, EffectiveEvent, EventData, EventType, PathwayState,
    PtlRow, RecordedEvent, RulesConfig,
};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::clock::{london_today, Clock};
use crate::fold::{self, par_filter_map};
use crate::packed::{Packed, Packer};
use crate::positions::Positions;
use crate::snapshot::{self, StoredPathway, StoredState};
use crate::views::{PtlIndexEntry, PtlKeys};
use crate::AppError;

/// Records read from the log per step of the runner.
const CHUNK: usize = 8192;

/// Pathways whose histories the cache keeps, per generation (two generations).
const CACHED_PATHWAYS: usize = 32768;

/// Pathways unpacked at a time for a view of every state (some 7 MB).
const UNPACK_SLICE: usize = 16_384;

/// Above this many pathways to re-evaluate, the log is read once in order
/// rather than pathway by pathway.
const BULK: usize = 2048;

/// A pathway's state as of the projection's `today`, and its PTL row.
#[derive(Debug, Clone)]
pub struct Current {
    pub state: PathwayState,
    /// Boxed: most pathways are closed and have none.
    pub row: Option<Box<PtlRow>>,
    /// The number of events the state was evaluated from.
    pub version: u64,
}

/// The trust a pathway is at and every trust it has been at: who may see it
/// (SPEC 7), from its events by `history::trusts`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Trusts {
    pub current: Arc<str>,
    pub ever: Box<[Arc<str>]>,
}

/// One pathway: where its records are, who may see it and its current state
/// (its id is its key in [`ProjectionData::pathways`]).
#[derive(Debug)]
pub struct PathwayEntry {
    /// The log positions of its records, in record (version) order.
    pub positions: Positions,
    /// `None` until evaluated (or when its history no longer fits the rules).
    pub trusts: Option<Arc<Trusts>>,
    /// Its state as of the projection's `today`, packed; `None` until
    /// evaluated, or when stored events no longer fit the rules (reported
    /// as an internal error when the pathway is read).
    pub state: Option<Packed>,
}

/// A pathway's state as the projection keeps it: packed, with its PTL keys
/// when it is on the PTL.
#[derive(Debug)]
struct Kept {
    packed: Packed,
    keys: Option<PtlKeys>,
}

impl Kept {
    fn of(current: &Current, packer: &Packer) -> Kept {
        Kept {
            packed: packer.pack(&current.state, current.version),
            keys: current.row.as_deref().map(PtlKeys::of),
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

/// How many of `history`'s events were known at `known_at`.
pub fn version_at(history: &[RecordedEvent], known_at: Option<DateTime<Utc>>) -> u64 {
    match known_at {
        Some(at) => history::known_at(history, at).len() as u64,
        None => history.len() as u64,
    }
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
    let known = match known_at {
        Some(at) => history::known_at(history, at),
        None => history,
    };
    let effective = effective_or_logged(known)?;
    current_from(&effective, known.len() as u64, as_of, config)
}

/// A pathway's effective events, or `None` (logged, without patient data)
/// when its history no longer fits the rules.
fn effective_or_logged(history: &[RecordedEvent]) -> Option<Vec<EffectiveEvent<'_>>> {
    match effective_events(history) {
        Ok(effective) => Some(effective),
        Err(e) => {
            tracing::error!(error = %e, "a pathway could not be evaluated");
            None
        }
    }
}

/// The state, PTL row and version from effective events (`None` without a
/// referral by `as_of`).
fn current_from(
    effective: &[EffectiveEvent],
    version: u64,
    as_of: NaiveDate,
    config: &RulesConfig,
) -> Option<Current> {
    let state = evaluate(effective, as_of, config)?;
    Some(Current {
        row: PtlRow::of(&state, config).map(Box::new),
        state,
        version,
    })
}

/// Histories of the pathways touched lately, in two generations: a look-up
/// in the old one moves the entry to the young one; when the young one is
/// full it becomes the old one.
#[derive(Default)]
struct HistoryCache {
    young: HashMap<Arc<str>, Arc<Vec<RecordedEvent>>>,
    old: HashMap<Arc<str>, Arc<Vec<RecordedEvent>>>,
}

impl HistoryCache {
    /// The history of `id` if the cache has all `len` of its events.
    fn get(&mut self, id: &str, len: usize) -> Option<Arc<Vec<RecordedEvent>>> {
        if let Some(h) = self.young.get(id) {
            return (h.len() == len).then(|| h.clone());
        }
        let (key, h) = self.old.remove_entry(id)?;
        if h.len() != len {
            return None;
        }
        self.insert(key, h.clone());
        Some(h)
    }

    fn insert(&mut self, id: Arc<str>, history: Arc<Vec<RecordedEvent>>) {
        if self.young.len() >= CACHED_PATHWAYS && !self.young.contains_key(&id) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(id, history);
    }

    /// Whether no history is cached at all.
    fn is_empty(&self) -> bool {
        self.young.is_empty() && self.old.is_empty()
    }

    /// Whether the cache holds exactly the first `len` events of `id`.
    fn holds(&self, id: &str, len: usize) -> bool {
        self.young
            .get(id)
            .or_else(|| self.old.get(id))
            .is_some_and(|h| h.len() == len)
    }

    /// Adds the event after the first `len` (when the cache holds exactly those).
    fn extend(&mut self, id: &str, len: usize, event: RecordedEvent) {
        for generation in [&mut self.young, &mut self.old] {
            if let Some(h) = generation.get_mut(id) {
                if h.len() == len {
                    Arc::make_mut(h).push(event);
                }
                return;
            }
        }
    }
}

/// The projected data, behind the projection's lock.
#[derive(Debug, Default)]
pub struct ProjectionData {
    /// The last log position folded in (and evaluated, once published).
    pub position: u64,
    /// The date the pathways' states are evaluated on.
    pub today: Option<NaiveDate>,
    pub pathways: HashMap<Arc<str>, PathwayEntry>,
    /// The pathways on today's PTL, keys inline (dense, for fast PTL pages).
    pub ptl: Vec<PtlIndexEntry>,
    ptl_slot: HashMap<Arc<str>, usize>,
    /// Trust codes, shared by every pathway's [`Trusts`].
    trust_codes: HashSet<Arc<str>>,
    /// Every pathway's [`Trusts`], shared by the pathways with the same.
    trust_sets: HashSet<Arc<Trusts>>,
    dirty: HashSet<Arc<str>>,
}

/// One pathway evaluated by a refresh.
struct Evaluated {
    id: Arc<str>,
    current: Option<Kept>,
    trusts: Option<(String, Vec<String>)>,
}

/// The in-memory projection of the whole log.
pub struct Projection {
    data: RwLock<ProjectionData>,
    published: watch::Sender<u64>,
    config: Arc<RulesConfig>,
    packer: Packer,
    log: Arc<dyn EventLog>,
    /// For reading the log from the runner's blocking threads.
    runtime: Handle,
    cache: Mutex<HistoryCache>,
    failure: Mutex<Option<String>>,
    /// When the oldest stored record the views do not show yet was recorded
    /// (`None` when caught up): the projection lag.
    behind_since: Mutex<Option<DateTime<Utc>>>,
    /// Set once the runner has first reached the head of the log.
    caught_up_once: std::sync::atomic::AtomicBool,
    /// Where snapshots are written and restored from, if anywhere.
    snapshot_path: Option<PathBuf>,
    /// The position a snapshot restored the projection to, if one did.
    restored_at: Mutex<Option<u64>>,
    /// The snapshot being read ahead, taken by the restore.
    preload: Mutex<Option<SnapshotPreload>>,
    /// Why the snapshot was not used at start, if it was not.
    snapshot_refused: Mutex<Option<String>>,
    /// Held while a snapshot is written: the periodic writer and the one at
    /// shutdown share a temporary file, so they must take turns.
    writing_snapshot: Mutex<()>,
}

/// What writing a snapshot did.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotWritten {
    pub position: u64,
    pub pathways: usize,
    pub bytes: u64,
}

impl Projection {
    /// An empty projection of `log`, restored from (and snapshotted to)
    /// `snapshot_path` when given; call from inside the Tokio runtime.
    pub fn new(
        config: Arc<RulesConfig>,
        log: Arc<dyn EventLog>,
        snapshot_path: Option<PathBuf>,
    ) -> Projection {
        Projection {
            snapshot_path,
            restored_at: Mutex::new(None),
            preload: Mutex::new(None),
            snapshot_refused: Mutex::new(None),
            writing_snapshot: Mutex::new(()),
            data: RwLock::new(ProjectionData::default()),
            published: watch::Sender::new(0),
            packer: Packer::new(&config),
            config,
            log,
            runtime: Handle::current(),
            cache: Mutex::new(HistoryCache::default()),
            failure: Mutex::new(None),
            behind_since: Mutex::new(None),
            caught_up_once: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Restores from `preload` (the snapshot read ahead) rather than reading
    /// the snapshot again; call before the runner starts.
    pub fn use_preload(&self, preload: SnapshotPreload) {
        *self.preload.lock().unwrap_or_else(|e| e.into_inner()) = Some(preload);
    }

    /// How the pathways' states are packed.
    pub fn packer(&self) -> &Packer {
        &self.packer
    }

    /// Read access to the projected data.
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, ProjectionData> {
        self.data.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ProjectionData> {
        self.data.write().unwrap_or_else(|e| e.into_inner())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HistoryCache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
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

    /// A pathway's history as projected (`None` if the pathway is unknown):
    /// from the cache, else read back from the log.
    pub async fn history(
        &self,
        pathway_id: &str,
    ) -> Result<Option<Arc<Vec<RecordedEvent>>>, AppError> {
        let (id, positions) = {
            let data = self.read();
            let Some((id, entry)) = data.pathways.get_key_value(pathway_id) else {
                return Ok(None);
            };
            if let Some(h) = self.cache().get(pathway_id, entry.positions.len()) {
                return Ok(Some(h));
            }
            (id.clone(), entry.positions.to_vec())
        };
        let records = self.log.read_positions(&positions).await;
        self.remember(id, records).map(Some)
    }

    /// Decodes a history read back from the log and caches it.
    fn remember(
        &self,
        id: Arc<str>,
        records: Result<Vec<StoredRecord>, openptl_log::LogError>,
    ) -> Result<Arc<Vec<RecordedEvent>>, AppError> {
        let records = own_records(&id, records)?;
        let history = Arc::new(
            records
                .iter()
                .map(|r| decode(r.as_ref()))
                .collect::<Result<Vec<_>, _>>()?,
        );
        self.cache().insert(id, history.clone());
        Ok(history)
    }

    /// The stored records of a pathway, oldest first (empty if unknown).
    pub async fn records(&self, pathway_id: &str) -> Result<Vec<StoredRecord>, AppError> {
        let positions = self
            .read()
            .pathways
            .get(pathway_id)
            .map(|p| p.positions.to_vec())
            .unwrap_or_default();
        own_records(pathway_id, self.log.read_positions(&positions).await)
    }

    /// A pathway's history from a blocking thread: cached, else from the log.
    fn history_blocking(
        &self,
        id: &Arc<str>,
        entry: &PathwayEntry,
    ) -> Result<Arc<Vec<RecordedEvent>>, AppError> {
        if let Some(h) = self.cache().get(id, entry.positions.len()) {
            return Ok(h);
        }
        let records = self
            .runtime
            .block_on(self.log.read_positions(&entry.positions.to_vec()));
        self.remember(id.clone(), records)
    }

    /// Builds the projection from the whole log at once when it holds
    /// nothing yet (a start without a snapshot): the
    /// log is read in place on every core ([`fold::fold_everything`]) and
    /// each pathway is evaluated as of `today` and put in place in one pass.
    /// Does nothing (`false`) otherwise, or when the log cannot be read in
    /// place; the runner then folds it in pages.
    pub fn rebuild_in_place(&self, today: NaiveDate) -> Result<bool, AppError> {
        if self.read().position > 0 || self.log.head() == 0 {
            return Ok(false);
        }
        let Some(reader) = self.log.in_place() else {
            return Ok(false);
        };
        let started = std::time::Instant::now();
        let reader = reader.map_err(|e| AppError::Storage(e.to_string()))?;
        let to = reader.head();
        // Each share puts its pathways in place a batch at a time, under
        // the write lock, while the others go on evaluating.
        let folded = fold::fold_everything(
            reader.as_ref(),
            |id, history| self.evaluated(id, history.unwrap_or_default(), today),
            |finished| {
                let mut data = self.write();
                for (id, positions, evaluated) in finished {
                    let entry = PathwayEntry {
                        positions,
                        trusts: None,
                        state: None,
                    };
                    data.pathways.insert(id.clone(), entry);
                    data.install(&id, evaluated.current, evaluated.trusts);
                }
            },
        );
        drop(reader);
        if let Err(e) = folded {
            // Back to nothing: the runner folds the log in pages instead.
            *self.write() = ProjectionData::default();
            return Err(e);
        }
        {
            let mut data = self.write();
            data.position = to;
            data.today = Some(today);
        }
        let installed_after = started.elapsed();
        let fresh = self.read().laid_out();
        let old = self.write().lay_out(fresh);
        drop(old);
        tracing::info!(
            records = to,
            pathways = self.read().pathways.len(),
            evaluated_and_in_place_ms = installed_after.as_millis() as u64,
            ms = started.elapsed().as_millis() as u64,
            "projection rebuilt from the log in place"
        );
        self.published.send_replace(to);
        Ok(true)
    }

    /// Folds stored records (the next ones of the log, in order) in.
    /// They become visible to views at the next [`Projection::refresh`].
    pub fn apply(&self, records: Vec<StoredRecord>) -> Result<(), AppError> {
        // Decode, outside the write lock, the records of pathways whose
        // history is cached (only those are decoded now; the rest when
        // read back). Positions only grow under the write lock, which this
        // runner alone takes, so the lengths seen here still hold below.
        // Nothing cached (a rebuild from the start): positions only, one
        // look-up per record. A history a view caches meanwhile is one event
        // short after this, and cached histories are used only whole.
        let cached = !self.cache().is_empty();
        let decoded: HashMap<u64, RecordedEvent> = if !cached {
            HashMap::new()
        } else {
            let data = self.read();
            let cache = self.cache();
            let mut seen: HashMap<&str, usize> = HashMap::new();
            let mut wanted = Vec::new();
            for record in &records {
                let stream = record.stream_id.as_str();
                let len = seen
                    .entry(stream)
                    .or_insert_with(|| data.pathways.get(stream).map_or(0, |p| p.positions.len()));
                if *len > 0 && cache.holds(stream, *len) {
                    wanted.push(record);
                }
                *len += 1;
            }
            drop(cache);
            drop(data);
            let mut decoded = HashMap::with_capacity(wanted.len());
            for record in wanted {
                decoded.insert(record.position, decode(record.as_ref())?);
            }
            decoded
        };
        let mut decoded = decoded;
        let mut data = self.write();
        let mut cache = self.cache();
        for record in records {
            data.expect_next(&record)?;
            let known = cached
                .then(|| data.pathways.get(record.stream_id.as_str()))
                .flatten()
                .map(|p| p.positions.len());
            // Keep a cached history whole (decoding only what is cached).
            if let Some(len) = known.filter(|len| cache.holds(&record.stream_id, *len)) {
                let event = match decoded.remove(&record.position) {
                    Some(event) => event,
                    None => decode(record.as_ref())?,
                };
                cache.extend(&record.stream_id, len, event);
            }
            data.add_position(&record);
        }
        Ok(())
    }

    /// A pathway evaluated as of `today` from its history (its effective
    /// events worked out once for both the state and the trusts).
    fn evaluated(&self, id: &Arc<str>, history: &[RecordedEvent], today: NaiveDate) -> Evaluated {
        let effective = effective_or_logged(history).unwrap_or_default();
        Evaluated {
            id: id.clone(),
            current: current_from(&effective, history.len() as u64, today, &self.config)
                .map(|c| Kept::of(&c, &self.packer)),
            trusts: history::trusts_of(&effective),
        }
    }

    /// Re-evaluates every pathway changed since the last refresh (all of them
    /// when the date moved on), then publishes the position. On a failure to
    /// read the log nothing is published and the pathways stay to be done.
    pub fn refresh(&self, today: NaiveDate) -> Result<(), AppError> {
        let started = std::time::Instant::now();
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
        let evaluated = {
            let data = self.read();
            let everything = dirty.len() == data.pathways.len();
            let outcome = if dirty.len() > BULK {
                let mut pathways: Vec<fold::PathwayRecords> = data
                    .pathways
                    .iter()
                    .filter(|(id, _)| everything || dirty.contains(*id))
                    .map(|(id, entry)| (id.clone(), entry.positions.to_vec()))
                    .collect();
                // In the order of their first records: reads go forwards.
                pathways.sort_unstable_by_key(|(_, positions)| positions.first().copied());
                fold::fold_pathways(
                    self.log.as_ref(),
                    &self.runtime,
                    position,
                    &pathways,
                    |id, history| self.evaluated(id, history.unwrap_or_default(), today),
                )
            } else {
                let entries: Vec<(&Arc<str>, &PathwayEntry)> = dirty
                    .iter()
                    .filter_map(|id| data.pathways.get_key_value(id))
                    .collect();
                let loaded = par_filter_map(&entries, |(id, entry)| {
                    Some(
                        self.history_blocking(id, entry)
                            .map(|history| self.evaluated(id, &history, today)),
                    )
                });
                loaded.into_iter().collect::<Result<Vec<_>, _>>()
            };
            drop(data);
            match outcome {
                Ok(evaluated) => evaluated,
                Err(e) => {
                    // The read guard is gone: taking the write lock under it
                    // would wait for itself, and every view behind it.
                    self.write().dirty.extend(dirty);
                    return Err(e);
                }
            }
        };
        let evaluated_after = started.elapsed();
        {
            let mut data = self.write();
            // The new date is announced together with the states evaluated on
            // it: until then, views for the new date take the slow path.
            if new_day {
                data.today = Some(today);
            }
            for Evaluated {
                id,
                current,
                trusts,
            } in evaluated
            {
                data.install(&id, current, trusts);
            }
        }
        if dirty.len() > BULK {
            // Copied under the read lock, swapped in under the write lock,
            // the old copies freed after it (the runner is the only writer,
            // so the map does not change in between).
            let installed_after = started.elapsed();
            let fresh = self.read().laid_out();
            let old = self.write().lay_out(fresh);
            drop(old);
            tracing::info!(
                pathways = dirty.len(),
                position,
                evaluated_ms = evaluated_after.as_millis() as u64,
                installed_ms = (installed_after - evaluated_after).as_millis() as u64,
                ms = started.elapsed().as_millis() as u64,
                "projection re-evaluated many pathways"
            );
        }
        self.published.send_replace(position);
        Ok(())
    }
}

impl Projection {
    /// The position a snapshot restored the projection to at start, if one did.
    pub fn restored_at(&self) -> Option<u64> {
        *self.restored_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Why the snapshot was not used at start, if it was not.
    pub fn snapshot_refused(&self) -> Option<String> {
        self.snapshot_refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Writes a snapshot of the evaluated states (blocking: call from a
    /// blocking thread). `None` when there is no snapshot path or nothing
    /// settled to write (pathways waiting to be evaluated, or an empty log).
    pub fn write_snapshot(&self) -> Result<Option<SnapshotWritten>, AppError> {
        let Some(path) = &self.snapshot_path else {
            return Ok(None);
        };
        let _turn = self
            .writing_snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        // Copy out under the read lock (ids, positions, packed states),
        // decode, encode and write outside it.
        type Item = (
            Arc<str>,
            Positions,
            Option<Arc<Trusts>>,
            Option<(Packed, bool)>,
        );
        let (position, today, items) = {
            let data = self.read();
            let Some(today) = data.today else {
                return Ok(None);
            };
            if !data.dirty.is_empty() || data.position == 0 {
                return Ok(None);
            }
            let items: Vec<Item> = data
                .pathways
                .iter()
                .map(|(id, p)| {
                    (
                        id.clone(),
                        p.positions.clone(),
                        p.trusts.clone(),
                        p.state.clone().map(|s| (s, data.ptl_slot.contains_key(id))),
                    )
                })
                .collect();
            (data.position, today, items)
        };
        let stored = self
            .runtime
            .block_on(self.log.read_positions(&[position]))
            .map_err(|e| AppError::Storage(e.to_string()))?;
        let event_id = stored
            .first()
            .map(|r| r.event_id)
            .ok_or_else(|| AppError::Internal(format!("position {position} is not stored")))?;
        let header =
            snapshot::Header::new(&self.config, position, event_id, today, items.len() as u64);
        let chunks = items.chunks(snapshot::CHUNK).map(|chunk| {
            chunk
                .iter()
                .map(|(id, positions, trusts, current)| StoredPathway {
                    id: Cow::Borrowed(&**id),
                    positions: positions.to_vec(),
                    trusts: trusts.as_ref().map(|t| {
                        (
                            Cow::Borrowed(&*t.current),
                            t.ever.iter().map(|e| Cow::Borrowed(&**e)).collect(),
                        )
                    }),
                    state: current.as_ref().map(|(packed, on_ptl)| StoredState {
                        on_ptl: *on_ptl,
                        packed: Cow::Borrowed(packed.as_bytes()),
                    }),
                })
                .collect()
        });
        let bytes = snapshot::write(path, &header, chunks).map_err(|e| {
            AppError::Storage(format!(
                "writing the projection snapshot {}: {e}",
                path.display()
            ))
        })?;
        Ok(Some(SnapshotWritten {
            position,
            pathways: items.len(),
            bytes,
        }))
    }

    /// Restores the projection from its snapshot when the snapshot belongs
    /// to this log, binary and rules (blocking). Gives the position restored
    /// to, or why the snapshot was not used. Uses the snapshot read ahead by
    /// a [`SnapshotPreload`] when there is one.
    fn restore(&self) -> Result<u64, String> {
        let path = self.snapshot_path.as_ref().ok_or("no snapshot path")?;
        let started = std::time::Instant::now();
        let preload = self
            .preload
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let prepared = match preload {
            Some(preload) => preload
                .0
                .join()
                .map_err(|_| "reading it panicked".to_string())??,
            None => prepare_snapshot(path, &self.config)?,
        };
        let decoded = started.elapsed();
        let header = &prepared.header;
        if header.position > self.log.head() {
            return Err("it is ahead of the log".into());
        }
        let stored = self
            .runtime
            .block_on(self.log.read_positions(&[header.position]))
            .map_err(|e| e.to_string())?;
        if stored.first().map(|r| *r.event_id.as_bytes()) != Some(header.event_id) {
            return Err("it belongs to another log".into());
        }
        let mut data = ProjectionData {
            position: header.position,
            today: header.today(),
            ..ProjectionData::default()
        };
        data.pathways.reserve(prepared.pathways.len());
        let mut records = 0u64;
        for (id, positions, trusts, current) in prepared.pathways {
            records += positions.len() as u64;
            if positions.last().is_some_and(|p| *p > header.position) {
                return Err("a pathway lies beyond its position".into());
            }
            if positions.windows(2).any(|w| w[0] >= w[1]) || positions.first() == Some(&0) {
                return Err("a pathway's positions are out of order".into());
            }
            data.pathways.insert(
                id.clone(),
                PathwayEntry {
                    positions: Positions::from_slice(&positions),
                    trusts: None,
                    state: None,
                },
            );
            data.install(&id, current, trusts);
        }
        if records != header.position || data.pathways.len() as u64 != header.pathways {
            return Err("its pathways do not account for every record".into());
        }
        let installed = started.elapsed();
        *self.write() = data;
        // Recorded before publishing: whoever waits for the position may ask.
        *self.restored_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(header.position);
        self.published.send_replace(header.position);
        // Serving from here. The packed states, decoded among the garbage
        // of the snapshot's decoding, are copied together afterwards, as
        // after a bulk refresh (see `refresh`).
        let fresh = self.read().laid_out();
        let old = self.write().lay_out(fresh);
        drop(old);
        tracing::info!(
            waited_for_decode_ms = decoded.as_millis() as u64,
            installed_ms = (installed - decoded).as_millis() as u64,
            laid_out_after_ms = (started.elapsed() - installed).as_millis() as u64,
            "projection snapshot installed"
        );
        Ok(header.position)
    }
}

/// A pathway as restored from a snapshot: id, positions, trusts, state.
type RestoredPathway = (
    Arc<str>,
    Vec<u64>,
    Option<(String, Vec<String>)>,
    Option<Kept>,
);

/// A snapshot read and decoded, and found to fit this binary and rules; not
/// yet checked against the log.
pub struct PreparedSnapshot {
    header: snapshot::Header,
    pathways: Vec<RestoredPathway>,
}

/// A snapshot being read and decoded on a thread of its own, started before
/// the log is opened so that the two overlap at start-up.
pub struct SnapshotPreload(std::thread::JoinHandle<Result<PreparedSnapshot, String>>);

impl SnapshotPreload {
    /// Starts reading the snapshot at `path`, if there is one.
    pub fn start(path: PathBuf, config: RulesConfig) -> Option<SnapshotPreload> {
        if !path.exists() {
            return None;
        }
        std::thread::Builder::new()
            .name("openptl-snapshot-read".into())
            .spawn(move || prepare_snapshot(&path, &config))
            .ok()
            .map(SnapshotPreload)
    }
}

/// Reads a snapshot, checks it was written by this binary under these
/// rules, and decodes its pathways (in parallel).
fn prepare_snapshot(path: &Path, config: &RulesConfig) -> Result<PreparedSnapshot, String> {
    if !path.exists() {
        return Err("none written yet".into());
    }
    let read = snapshot::read(path)?;
    let header = read.header.clone();
    let expected = snapshot::Header::new(
        config,
        header.position,
        uuid::Uuid::from_bytes(header.event_id),
        header.today().ok_or("its date is out of range")?,
        header.pathways,
    );
    if header.format != expected.format {
        // Newer or older, a snapshot is derived: ignored, and the log folded
        // (decision 92); the next snapshot written replaces it.
        return Err(format!(
            "it has format {} (this binary reads format {})",
            header.format,
            snapshot::FORMAT
        ));
    }
    if header.binary != expected.binary {
        return Err(format!("it was written by version {}", header.binary));
    }
    if header.rules != expected.rules {
        return Err("the rules configuration has changed since".into());
    }
    let packer = Packer::new(config);
    let decoded = par_filter_map(&read.chunks(), |bytes| {
        let restore = |p: StoredPathway| -> Result<RestoredPathway, String> {
            let current = p
                .state
                .map(|stored| {
                    let packed = Packed::from_bytes(&stored.packed)?;
                    if !stored.on_ptl {
                        return Ok::<_, String>(Kept { packed, keys: None });
                    }
                    // Its PTL keys, from its row.
                    let (state, _) = packer.unpack(&packed)?;
                    let keys = PtlRow::of(&state, config).as_ref().map(PtlKeys::of);
                    Ok(Kept { packed, keys })
                })
                .transpose()?;
            let trusts = p.trusts.map(|(now, ever)| {
                (
                    now.into_owned(),
                    ever.into_iter().map(Cow::into_owned).collect(),
                )
            });
            Ok((Arc::from(&*p.id), p.positions, trusts, current))
        };
        Some(snapshot::decode_chunk(bytes).and_then(|chunk| {
            chunk
                .into_iter()
                .map(restore)
                .collect::<Result<Vec<_>, _>>()
        }))
    });
    let mut pathways = Vec::with_capacity(header.pathways as usize);
    for chunk in decoded {
        pathways.extend(chunk?);
    }
    Ok(PreparedSnapshot { header, pathways })
}

/// `items`' packed states unpacked, a slice at a time on every core.
fn unpack_all<'a, K: Copy + Send + Sync + 'a>(
    items: Vec<(K, &'a Packed)>,
    packer: &'a Packer,
) -> impl Iterator<Item = (K, Result<Current, AppError>)> + 'a {
    let n = items.len();
    (0..n).step_by(UNPACK_SLICE).flat_map(move |start| {
        let slice = &items[start..(start + UNPACK_SLICE).min(n)];
        par_filter_map(slice, |(key, packed)| {
            Some((*key, packer.current(packed).map_err(unpack_failed)))
        })
    })
}

fn unpack_failed(e: String) -> AppError {
    AppError::Internal(format!("a projected pathway state: {e}"))
}

impl ProjectionData {
    /// Every evaluated pathway's id and current state, unpacked a slice at
    /// a time on every core as the iteration goes. With a `window` (first
    /// and last day), states holding no date in it are left out: no report
    /// over a period inside the window counts them
    /// ([`openptl_rules::PathwayState::date_span`]).
    pub fn states<'a>(
        &'a self,
        packer: &'a Packer,
        window: Option<(NaiveDate, NaiveDate)>,
    ) -> impl Iterator<Item = (&'a str, Result<Current, AppError>)> + 'a {
        let inside = move |packed: &Packed| {
            window.is_none_or(|(first, last)| {
                let (earliest, latest) = packed.span();
                latest >= first && earliest <= last
            })
        };
        let packed = self
            .pathways
            .iter()
            .filter_map(|(id, p)| Some((&**id, p.state.as_ref()?)))
            .filter(|(_, packed)| inside(packed))
            .collect();
        unpack_all(packed, packer)
    }

    /// The pathways on the PTL with their states (unpacked as
    /// [`ProjectionData::states`] does).
    pub fn ptl_states<'a>(
        &'a self,
        packer: &'a Packer,
    ) -> impl Iterator<Item = (&'a PtlIndexEntry, Result<Current, AppError>)> + 'a {
        let packed = self
            .ptl
            .iter()
            .filter_map(|e| Some((e, self.pathways.get(&e.id)?.state.as_ref()?)))
            .collect();
        unpack_all(packed, packer)
    }

    /// A pathway's state and version, unpacked (`None` when not evaluated).
    pub fn state_of(&self, id: &str, packer: &Packer) -> Result<Option<Current>, AppError> {
        let Some(packed) = self.pathways.get(id).and_then(|p| p.state.as_ref()) else {
            return Ok(None);
        };
        packer.current(packed).map(Some).map_err(unpack_failed)
    }

    /// Fresh copies of every packed state, in the order the map yields them,
    /// for [`ProjectionData::lay_out`].
    ///
    /// After a bulk refresh or a restore the packed states lie scattered
    /// among the freed memory of the histories evaluated meanwhile, which
    /// keeps those pages resident; copied afresh and in map order, they sit
    /// together (measured at 1.4M pathways: 180 MB less resident) and a
    /// view of every state reads memory in order.
    fn laid_out(&self) -> Vec<Packed> {
        self.pathways
            .values()
            .filter_map(|p| p.state.clone())
            .collect()
    }

    /// Puts `fresh` (from [`ProjectionData::laid_out`] on this map,
    /// unchanged since) in place; gives back the old copies, to be freed
    /// outside the lock.
    fn lay_out(&mut self, fresh: Vec<Packed>) -> Vec<Packed> {
        let mut fresh = fresh.into_iter();
        let mut old = Vec::with_capacity(fresh.len());
        for p in self.pathways.values_mut() {
            if let Some(packed) = &mut p.state {
                match fresh.next() {
                    Some(copy) => old.push(std::mem::replace(packed, copy)),
                    None => break,
                }
            }
        }
        old
    }

    /// Refuses a record that is not the next of the log.
    fn expect_next(&self, record: &StoredRecord) -> Result<(), AppError> {
        if record.position == self.position + 1 {
            return Ok(());
        }
        Err(AppError::Internal(format!(
            "projection expected position {} but the log gave {}",
            self.position + 1,
            record.position
        )))
    }

    /// Folds the next record in: its position joins its pathway (one
    /// look-up for a known pathway), which is marked for re-evaluation.
    fn add_position(&mut self, record: &StoredRecord) {
        self.position = record.position;
        let stream = record.stream_id.as_str();
        match self.pathways.get_mut(stream) {
            Some(entry) => {
                entry.positions.push(record.position);
                // A second look-up only for a pathway not yet marked.
                if !self.dirty.contains(stream) {
                    if let Some((id, _)) = self.pathways.get_key_value(stream) {
                        self.dirty.insert(id.clone());
                    }
                }
            }
            None => {
                let id: Arc<str> = Arc::from(stream);
                let entry = PathwayEntry {
                    positions: Positions::from_slice(&[record.position]),
                    trusts: None,
                    state: None,
                };
                self.pathways.insert(id.clone(), entry);
                self.dirty.insert(id);
            }
        }
    }

    /// Sets a pathway's evaluated state and trusts and keeps its place in
    /// the PTL index (the one way both a refresh and a restore install).
    fn install(
        &mut self,
        id: &Arc<str>,
        current: Option<Kept>,
        trusts: Option<(String, Vec<String>)>,
    ) {
        let codes = &mut self.trust_codes;
        let mut intern = |code: &str| match codes.get(code) {
            Some(c) => c.clone(),
            None => {
                let c: Arc<str> = Arc::from(code);
                codes.insert(c.clone());
                c
            }
        };
        let trusts = trusts.map(|(now, ever)| {
            let trusts = Trusts {
                current: intern(&now),
                ever: ever.iter().map(|t| intern(t)).collect(),
            };
            // Shared: a few hundred combinations serve every pathway.
            match self.trust_sets.get(&trusts) {
                Some(shared) => shared.clone(),
                None => {
                    let shared = Arc::new(trusts);
                    self.trust_sets.insert(shared.clone());
                    shared
                }
            }
        });
        let Some(entry) = self.pathways.get_mut(id) else {
            return;
        };
        let (state, on_ptl) = match current {
            Some(Kept { packed, keys }) => {
                let version = packed.version();
                let row = keys.map(|keys| PtlIndexEntry {
                    keys,
                    id: id.clone(),
                    version,
                });
                (Some(packed), row)
            }
            None => (None, None),
        };
        entry.state = state;
        entry.trusts = trusts;
        let (ptl, ptl_slot) = (&mut self.ptl, &mut self.ptl_slot);
        match (on_ptl, ptl_slot.get(id).copied()) {
            (Some(row), Some(slot)) => ptl[slot] = row,
            (Some(row), None) => {
                ptl_slot.insert(id.clone(), ptl.len());
                ptl.push(row);
            }
            (None, Some(slot)) => {
                ptl.swap_remove(slot);
                ptl_slot.remove(id);
                if let Some(moved) = ptl.get(slot) {
                    ptl_slot.insert(moved.id.clone(), slot);
                }
            }
            (None, None) => {}
        }
    }
}

/// A pathway's records read back by position, refused if one belongs to
/// another stream (positions that disagree with the log must never put
/// another patient's events in a history).
fn own_records(
    id: &str,
    records: Result<Vec<StoredRecord>, openptl_log::LogError>,
) -> Result<Vec<StoredRecord>, AppError> {
    let records = records.map_err(|e| AppError::Storage(e.to_string()))?;
    match records.iter().find(|r| r.stream_id != id) {
        Some(other) => Err(AppError::Internal(format!(
            "position {} holds another stream's record",
            other.position
        ))),
        None => Ok(records),
    }
}

/// Decodes one stored record for the rules.
pub fn decode(r: RecordRef<'_>) -> Result<RecordedEvent, AppError> {
    let event_type = EventType::parse(r.event_type).ok_or_else(|| {
        AppError::Internal(format!(
            "position {}: unknown stored event type {}",
            r.position, r.event_type
        ))
    })?;
    let (occurred_on, data) = EventData::decode_payload(event_type, r.schema_version, r.payload)
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
    if let Some(p) = projection.upgrade() {
        if p.snapshot_path.is_some() {
            let started = std::time::Instant::now();
            let step = p.clone();
            match tokio::task::spawn_blocking(move || step.restore()).await {
                Ok(Ok(position)) => tracing::info!(
                    position,
                    ms = started.elapsed().as_millis() as u64,
                    "projection restored from its snapshot"
                ),
                Ok(Err(why)) => {
                    tracing::info!(
                        reason = %why,
                        "projection snapshot not used; folding the log from the start"
                    );
                    *p.snapshot_refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                }
                Err(e) => tracing::warn!(error = %e, "restoring the projection snapshot panicked"),
            }
        }
    }
    if let Some(p) = projection.upgrade() {
        let step = p.clone();
        let today = london_today(clock.now());
        match tokio::task::spawn_blocking(move || step.rebuild_in_place(today)).await {
            Ok(Ok(_)) => {}
            // The runner folds the log in pages instead.
            Ok(Err(e)) => fail(&p, e.to_string()),
            Err(e) => fail(&p, format!("projection rebuild panicked: {e}")),
        }
    }
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
            let refreshed = !stale || {
                let step = p.clone();
                match tokio::task::spawn_blocking(move || step.refresh(today)).await {
                    Ok(Ok(())) => {
                        p.set_failure(None);
                        true
                    }
                    Ok(Err(e)) => {
                        fail(&p, e.to_string());
                        false
                    }
                    Err(e) => {
                        fail(&p, format!("projection step panicked: {e}"));
                        false
                    }
                }
            };
            if refreshed
                && !p
                    .caught_up_once
                    .swap(true, std::sync::atomic::Ordering::AcqRel)
            {
                // Serving now: the log's background work may have the CPU.
                p.log.start_up_done();
            }
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
                        step.refresh(today)?;
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

/// Rewrites the snapshot every `every` while the log moves on, until the
/// projection is dropped.
pub(crate) async fn snapshot_periodically(projection: Weak<Projection>, every: Duration) {
    let mut written = 0u64;
    loop {
        tokio::time::sleep(every).await;
        let Some(p) = projection.upgrade() else {
            return;
        };
        if p.position() == written || !p.has_caught_up() {
            continue;
        }
        let started = std::time::Instant::now();
        match tokio::task::spawn_blocking(move || p.write_snapshot()).await {
            Ok(Ok(Some(done))) => {
                written = done.position;
                tracing::info!(
                    position = done.position,
                    pathways = done.pathways,
                    bytes = done.bytes,
                    ms = started.elapsed().as_millis() as u64,
                    "projection snapshot written"
                );
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "the projection snapshot was not written"),
            Err(e) => tracing::warn!(error = %e, "writing the projection snapshot panicked"),
        }
    }
}

fn fail(p: &Projection, message: String) {
    tracing::error!(error = %message, "the projection could not follow the log; retrying");
    p.set_failure(Some(message));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(position: u64, stream: &str) -> StoredRecord {
        StoredRecord {
            position,
            stream_id: stream.to_string(),
            version: 1,
            event_id: uuid::Uuid::new_v4(),
            event_type: "tracking_note_added".to_string(),
            schema_version: 1,
            recorded_at: Utc::now(),
            actor: "test".to_string(),
            payload: Vec::new(),
        }
    }

    #[test]
    fn a_history_read_back_never_takes_another_streams_record() {
        let own = vec![stored(3, "A"), stored(7, "A")];
        assert_eq!(own_records("A", Ok(own.clone())).unwrap(), own);
        let mixed = vec![stored(3, "A"), stored(5, "B")];
        let refused = own_records("A", Ok(mixed)).unwrap_err().to_string();
        assert!(refused.contains("position 5"), "{refused}");
        assert!(!refused.contains('B'), "{refused}");
    }

    #[test]
    fn a_snapshot_of_a_newer_format_is_ignored_not_misread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("projection.snapshot");
        let config = RulesConfig::defaults();
        let mut header = snapshot::Header::new(
            &config,
            1,
            uuid::Uuid::from_u128(7),
            chrono::NaiveDate::from_ymd_opt(2025, 4, 7).unwrap(),
            0,
        );
        snapshot::write(&path, &header, std::iter::empty()).unwrap();
        assert!(prepare_snapshot(&path, &config).is_ok());
        header.format = snapshot::FORMAT + 1;
        snapshot::write(&path, &header, std::iter::empty()).unwrap();
        let refused = prepare_snapshot(&path, &config).err().expect("ignored");
        assert!(
            refused.contains(&format!("format {}", snapshot::FORMAT + 1)),
            "{refused}"
        );
    }
}
