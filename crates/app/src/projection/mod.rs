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
//!   sees the state after it. It is published under the write lock that
//!   installs those states, so a view never reads states ahead of the
//!   position it reports; records folded in but not yet published are
//!   never read back by a past view either ([`crate::past`] caps a view's
//!   histories at the published position).
//! - `current` is the state as of `today` (Europe/London) and known now; when
//!   the date changes the runner brings every pathway's state to it (moved,
//!   where that is what evaluation gives byte for byte, decision 219; else
//!   re-evaluated).
//! - A cached history of length n is always the first n events of its
//!   pathway; it is used only when n equals the pathway's record count.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::PoisonError;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_log::{EventLog, StoredRecord, Subscription};
use openptl_rules::pathway::{Earlier, Settled};
use openptl_rules::{history, PathwayState, PtlRow, RecordedEvent, RulesConfig};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::aggregates::kept_days::{self, KeptDays};
use crate::aggregates::last_week::{self, LastWeek};
use crate::aggregates::{Aggregates, Contribution};
use crate::clock::{london_today, Clock};
use crate::evaluate::{current_from, decode, effective_or_logged, Current};
use crate::fold::{self, par_filter_map};
use crate::packed::{Packed, Packer};
use crate::positions::Positions;
use crate::ptl_index::{PtlIndexEntry, PtlKeys};
use crate::snapshot::{self, StoredPathway, StoredState};
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

/// How often a view waiting for the new day looks again between
/// publications ([`Projection::wait_for_day`]).
const DAY_LOOK: Duration = Duration::from_millis(50);

/// Behind the log by more than this (and not by a new day's refresh
/// running now), the runner is catching up a backlog and views of a new
/// day do not wait for it ([`Projection::settling_towards`]).
const BACKLOG: Duration = Duration::from_secs(5);

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
    fn of(
        current: &Current,
        settled: Option<Settled>,
        earlier: &[(Earlier, PathwayState)],
        packer: &Packer,
    ) -> Kept {
        Kept {
            packed: packer.pack_with_earlier(&current.state, current.version, settled, earlier),
            keys: current.row.as_deref().map(PtlKeys::of),
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
    /// Every pathway by id, in the order they first appeared.
    pub pathways: Pathways,
    /// The pathways on today's PTL, keys inline (dense, for fast PTL pages).
    pub ptl: Vec<PtlIndexEntry>,
    ptl_slot: pathways::PtlSlots,
    /// Every pathway's [`Trusts`], shared by the pathways with the same.
    trust_sets: trust_sets::TrustSets,
    dirty: HashSet<PathwayKey>,
    /// Today's standards and milestone cells over every state (issue 22);
    /// `None` until built after a bulk change (views then read the states).
    pub(crate) aggregates: Option<Aggregates>,
    /// Last Sunday's weekly return ([`LastWeek`], decision 200): built and
    /// dropped with `aggregates`, of the latest Sunday before `today`.
    pub(crate) last_week: Option<LastWeek>,
    /// The standards, FIT and milestone cells as of a few past dates, as
    /// known now ([`KeptDays`], decision 202): kept once a view of the
    /// date counted them (under the read lock, hence the mutex), changed
    /// by each refresh, dropped with `aggregates`.
    pub(crate) kept_days: std::sync::Mutex<KeptDays>,
    /// The stamp of the entry last put in `ptl` (stamps rise across every
    /// projection of the process, [`data::next_ptl_stamp`]): unchanged, no
    /// entry was added or replaced, so risk keys scored for every entry
    /// still are (decision 154).
    pub(crate) ptl_changed: u64,
    /// The date each record of the last days affects, by position: what a
    /// view as known at a past moment needs to move states of pathways
    /// with later records ([`RecordDays`]).
    pub(crate) record_days: RecordDays,
}

/// The states of the `dirty` pathways (every pathway, when `everything`)
/// that records since they were evaluated replace: each under the position
/// of the first record its version does not count, with the date it was
/// evaluated on ([`ReplacedStates`]).
fn replaced_by(
    data: &ProjectionData,
    dirty: &HashSet<PathwayKey>,
    everything: bool,
) -> Vec<replaced::Replaced> {
    let Some(on) = data.today else {
        return Vec::new();
    };
    // Its record months are today's aggregates' (the month before this
    // one and later ones), when they are kept.
    let of = |index: usize, entry: &PathwayEntry| {
        let packed = entry.state.as_ref()?;
        let version = usize::try_from(packed.version()).ok()?;
        // Counted without decoding the positions: most have no new record.
        if version == 0 || entry.positions.len() <= version {
            return None;
        }
        let position = *entry.positions.to_vec().get(version)?;
        let months = data.aggregates.as_ref().map(|a| a.cwt_months(index, on));
        Some((position, on, months, Box::from(packed.as_bytes())))
    };
    if everything {
        (data.pathways.values().enumerate())
            .filter_map(|(index, entry)| of(index, entry))
            .collect()
    } else {
        dirty
            .iter()
            .filter_map(|id| {
                let index = data.pathways.find(id)?;
                of(index, &data.pathways.as_slice()[index].1)
            })
            .collect()
    }
}

/// One pathway evaluated by a refresh.
struct Evaluated {
    id: PathwayKey,
    current: Option<Kept>,
    trusts: Option<(String, Vec<String>)>,
    /// What the pathway's old state and its new one add to the aggregates,
    /// when asked for (a refresh of a few pathways).
    delta: Option<Result<Delta, AppError>>,
}

/// What a re-evaluated pathway's old state and its new one add to today's
/// aggregates, and its cells in last Sunday's return before and after when
/// they may differ ([`last_week::change`]).
struct Delta {
    before: Contribution,
    after: Contribution,
    last_week: Option<(last_week::Cells, last_week::Cells)>,
    /// Its contributions to the cells kept as of past dates, before and
    /// after, as of each date they may differ ([`kept_days::changes`]).
    days: Vec<kept_days::Change>,
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
    /// Above this many pathways to re-evaluate, a refresh reads the log in
    /// bulk ([`BULK`]; tests lower it to take that way with few).
    bulk: std::sync::atomic::AtomicUsize,
    /// Set while the runner brings the states to a new day and builds its
    /// aggregates: views of the new day wait for it ([`Self::wait_for_day`]).
    settling: std::sync::atomic::AtomicBool,
    /// The day views last waited for and when their waiting ends: one
    /// deadline for every wait of a day, however many a view makes.
    day_deadline: Mutex<Option<(NaiveDate, tokio::time::Instant)>>,
    /// The states new days moved rather than read back (tests).
    #[cfg(test)]
    pub(crate) moved: std::sync::atomic::AtomicUsize,
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
    /// The states refreshes replaced, kept beside the snapshot for views
    /// as known at a past moment (decision 162); none without a snapshot
    /// path.
    replaced: Option<Arc<ReplacedStates>>,
}

/// The bytes the projection's largest structures hold, as allocated
/// ([`Projection::memory`]); what the allocator adds to each allocation is
/// not counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Every pathway's entry, in the dense vector, and the table that
    /// finds it by id (decision 146).
    pub entries: usize,
    /// The allocations of the pathways' ids longer than 23 bytes (shorter
    /// ones lie in their entries; the PTL index shares them).
    pub ids: usize,
    /// Each pathway's record positions.
    pub positions: usize,
    /// Every packed state, the earlier states kept within them included.
    pub packed: usize,
    /// Of `packed`, the earlier states kept for past views (decision 143).
    pub earlier: usize,
    /// Today's PTL index and the table of its slots.
    pub ptl: usize,
    /// The record dates of the last days ([`RecordDays`]).
    pub record_days: usize,
}

impl MemoryUse {
    /// Every structure counted (`earlier` is within `packed`).
    pub fn total(&self) -> usize {
        self.entries + self.ids + self.positions + self.packed + self.ptl + self.record_days
    }
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
        let replaced = snapshot_path
            .as_deref()
            .map(|path| Arc::new(ReplacedStates::new(replaced::dir_beside(path), &config)));
        Projection {
            replaced,
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
            bulk: std::sync::atomic::AtomicUsize::new(BULK),
            settling: std::sync::atomic::AtomicBool::new(false),
            day_deadline: Mutex::new(None),
            #[cfg(test)]
            moved: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Restores from `preload` (the snapshot read ahead) rather than reading
    /// the snapshot again; call before the runner starts.
    pub fn use_preload(&self, preload: SnapshotPreload) {
        *self.preload.lock().unwrap_or_else(PoisonError::into_inner) = Some(preload);
    }

    /// Re-evaluates more than `pathways` at once in bulk ([`BULK`]): tests
    /// lower it to take that way with few pathways.
    #[cfg(test)]
    pub(crate) fn set_bulk(&self, pathways: usize) {
        self.bulk
            .store(pathways, std::sync::atomic::Ordering::Relaxed);
    }

    /// How the pathways' states are packed.
    pub fn packer(&self) -> &Packer {
        &self.packer
    }

    /// Read access to the projected data (the app's own views).
    pub(crate) fn read(&self) -> std::sync::RwLockReadGuard<'_, ProjectionData> {
        self.data.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many past dates' cells are kept (decision 202), their cells,
    /// and about how many bytes those hold (for the benchmark).
    pub fn kept_days(&self) -> (usize, usize, usize) {
        let data = self.read();
        let size = kept_days::lock(&data.kept_days).size();
        size
    }

    /// How many pathways the projection holds, and how many are on today's PTL.
    pub fn counts(&self) -> (usize, usize) {
        let data = self.read();
        (data.pathways.len(), data.ptl.len())
    }

    /// The date its states are evaluated on (`None` before the first
    /// fold), and whether today's aggregates are kept for it (views of
    /// today then answer from them): what the new day's benchmark waits
    /// for.
    pub fn day(&self) -> (Option<NaiveDate>, bool) {
        let data = self.read();
        (data.today, data.aggregates.is_some())
    }

    /// [`Self::day`] without waiting for the projection: `None` while the
    /// runner holds it (for the async workers, which must not block).
    pub(crate) fn try_day(&self) -> Option<(Option<NaiveDate>, bool)> {
        let data = match self.data.try_read() {
            Ok(data) => data,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some((data.today, data.aggregates.is_some()))
    }

    /// Whether the runner is bringing the states to a new day and building
    /// its aggregates now.
    pub(crate) fn settling(&self) -> bool {
        self.settling.load(std::sync::atomic::Ordering::Acquire)
    }

    /// What the projection's largest structures hold in memory: the
    /// benchmark's account of resident memory (SPEC 7).
    pub fn memory(&self) -> MemoryUse {
        let data = self.read();
        // An id kept inline takes nothing beyond its entry; a longer one is
        // one allocation (an `Arc<str>`): two counts, then the text.
        let id_bytes = |id: &PathwayKey| match id.is_heap_allocated() {
            true => (2 * std::mem::size_of::<usize>() + id.len()).next_multiple_of(8),
            false => 0,
        };
        let mut use_ = MemoryUse {
            entries: data.pathways.bytes(),
            ptl: data.ptl_slot.bytes(&data.ptl),
            record_days: data.record_days.bytes(),
            ..MemoryUse::default()
        };
        for (id, entry) in data.pathways.iter() {
            use_.ids += id_bytes(id);
            use_.positions += entry.positions.as_bytes().len();
            if let Some(state) = &entry.state {
                use_.packed += state.as_bytes().len();
                use_.earlier += state.earlier_bytes();
            }
        }
        use_
    }

    /// The trusts of the pathways on today's PTL, each once, sorted.
    pub fn ptl_trusts(&self) -> Vec<String> {
        let data = self.read();
        let mut trusts: Vec<String> = data.ptl.iter().map(|e| e.keys.trust()).collect();
        drop(data);
        trusts.sort_unstable();
        trusts.dedup();
        trusts
    }

    /// Up to `max` pathway ids, spread evenly from the oldest pathway to
    /// the newest (for benchmarks: the first ones alone would all be long
    /// closed).
    pub fn some_pathway_ids(&self, max: usize) -> Vec<String> {
        let data = self.read();
        let step = data.pathways.len().div_ceil(max.max(1)).max(1);
        data.pathways
            .keys()
            .step_by(step)
            .take(max)
            .map(|k| k.to_string())
            .collect()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ProjectionData> {
        self.data.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HistoryCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The last position whose effects every view shows.
    pub fn position(&self) -> u64 {
        *self.published.borrow()
    }

    /// Whether a view of `day` (today) as known now would find the runner
    /// on its way to it: the states on an earlier day (the runner brings
    /// them to the new one within a second and the refresh's time), or,
    /// with `aggregates`, on `day` with its aggregates being built. Never
    /// while the runner is stuck, has not caught up since the start, or is
    /// catching up a backlog (it moves to the new day once caught up).
    ///
    /// Never blocks: it is asked on the async workers, and while the
    /// runner holds the projection to put states in place (a second at
    /// midnight at 1.4M pathways) it answers that the runner is on its way.
    pub(crate) fn settling_towards(&self, day: NaiveDate, aggregates: bool) -> bool {
        let settling = self.settling();
        // Behind by a refresh running now (a new day folded in with a
        // batch) is no backlog.
        let backlog = !settling && self.behind_for() > BACKLOG;
        if self.failure().is_some() || !self.has_caught_up() || backlog {
            return false;
        }
        let Some((on, kept)) = self.try_day() else {
            return true;
        };
        match on {
            None => false,
            Some(on) if on < day => true,
            Some(on) => on == day && aggregates && !kept && settling,
        }
    }

    /// Waits while the runner is on its way to `day`
    /// ([`Self::settling_towards`]): after midnight, a view of the new day
    /// waits the seconds it takes rather than working out every state
    /// itself on the cores the runner needs. Every wait for the same day
    /// ends by one deadline, `limit` after the first began, so a view
    /// that waits at several steps waits `limit` at most in all, and once
    /// it has passed none waits for that day. False when the deadline
    /// ended the wait; true when there was nothing (more) to wait for
    /// (the day arrived, or the runner failed or fell behind).
    pub(crate) async fn wait_for_day(
        &self,
        day: NaiveDate,
        aggregates: bool,
        limit: Duration,
    ) -> bool {
        let deadline = {
            let mut kept = self
                .day_deadline
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match *kept {
                Some((of, deadline)) if of == day => deadline,
                _ => {
                    let deadline = tokio::time::Instant::now() + limit;
                    *kept = Some((day, deadline));
                    deadline
                }
            }
        };
        let mut published = self.published.subscribe();
        loop {
            if !self.settling_towards(day, aggregates) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            // Woken by a publication (the new day's comes with its
            // states), else looked at again shortly (the aggregates, a
            // failure). Nothing is held across the wait.
            let look_again = tokio::time::Instant::now() + DAY_LOOK;
            let _ = tokio::time::timeout_at(look_again.min(deadline), published.changed()).await;
        }
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
            .unwrap_or_else(PoisonError::into_inner)
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
        let since = *self
            .behind_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        since.map_or(Duration::ZERO, |t| {
            (Utc::now() - t).to_std().unwrap_or(Duration::ZERO)
        })
    }

    fn set_behind_since(&self, since: Option<DateTime<Utc>>) {
        *self
            .behind_since
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = since;
    }

    fn set_failure(&self, failure: Option<String>) {
        *self.failure.lock().unwrap_or_else(PoisonError::into_inner) = failure;
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
        id: PathwayKey,
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
        id: &PathwayKey,
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
        let reader = reader.map_err(AppError::from)?;
        let to = reader.head();
        // Each share puts its pathways in place a batch at a time, under
        // the write lock, while the others go on evaluating.
        let folded = fold::fold_everything(
            reader.as_ref(),
            |id, history| self.evaluated(id, history.unwrap_or_default(), today, None),
            |finished| {
                let mut data = self.write();
                for (id, positions, evaluated) in finished {
                    data.put_whole(id, positions, evaluated.current, evaluated.trusts);
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
            data.pathways.shrink_to_fit();
        }
        let installed_after = started.elapsed();
        // The states are not copied afresh here, as after a restore or a
        // bulk refresh: packed into allocations of their own length on the
        // fold's threads, they already sit close, and copying them left
        // 20 MiB more resident at 1.4M pathways (decision 145).
        // Views of today answer from the cells as soon as the fold is served.
        self.build_aggregates();
        tracing::info!(
            records = to,
            pathways = self.read().pathways.len(),
            evaluated_and_in_place_ms = installed_after.as_millis() as u64,
            ms = started.elapsed().as_millis() as u64,
            "projection rebuilt from the log in place"
        );
        self.published.send_replace(to);
        self.read_record_days(to);
        Ok(true)
    }

    /// Reads the dates of the last days' records up to `to` from the log in
    /// place, and puts them before those of the records applied since: after
    /// a fold from nothing or a restore, once serving (until then, a past
    /// view as known at a moment reads back more pathways, which is safe).
    pub(super) fn read_record_days(&self, to: u64) {
        let Some(reader) = self.log.in_place() else {
            return;
        };
        let days = reader
            .map_err(AppError::from)
            .and_then(|reader| record_days_from(reader.as_ref(), to));
        // Unread, past views read back the pathways they would have
        // moved: the safe answer.
        let mut read = days.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the dates of the last days' records could not be read");
            RecordDays::default()
        });
        let mut data = self.write();
        read.append(std::mem::take(&mut data.record_days));
        data.record_days = read;
    }

    /// Folds stored records (the next ones of the log, in order) in.
    /// They become visible to views at the next [`Projection::refresh`].
    pub fn apply(&self, records: Vec<StoredRecord>) -> Result<(), AppError> {
        if let Some(why) = records
            .iter()
            .find_map(|r| crate::evaluate::unreadable(r.as_ref()))
        {
            return Err(AppError::internal(why));
        }
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
        let affected: Vec<Option<NaiveDate>> =
            records.iter().map(|r| date_affected(r.as_ref())).collect();
        let mut data = self.write();
        let mut cache = self.cache();
        for (record, affected) in records.into_iter().zip(affected) {
            data.expect_next(&record)?;
            data.record_days
                .push(record.position, record.recorded_at, affected);
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
    /// events worked out once for both the state and the trusts). With
    /// `old` (its state before, if any, the date it was evaluated on, and
    /// the past dates whose cells are kept), also what the old and the new
    /// state add to the aggregates.
    fn evaluated(
        &self,
        id: &PathwayKey,
        history: &[RecordedEvent],
        today: NaiveDate,
        old: Option<(Option<&Packed>, NaiveDate, &[NaiveDate])>,
    ) -> Evaluated {
        let effective = effective_or_logged(history).unwrap_or_default();
        let current = current_from(&effective, history.len() as u64, today, &self.config);
        // Kept with the state, and what its clocks off the PTL are kept under.
        let settled = Settled::of(&effective);
        let delta = old.map(|(packed, evaluated_on, days)| {
            let old = packed
                .map(|packed| self.packer.current(packed))
                .transpose()
                .map_err(data::unpack_failed)?;
            let before = old
                .as_ref()
                .map(|old| {
                    let from = packed.and_then(|p| p.on_ptl_settled_from().1);
                    Contribution::of(old, from, evaluated_on, &self.config)
                })
                .unwrap_or_default();
            let after = current
                .as_ref()
                .map(|c| Contribution::of(c, settled.map(|s| s.from), today, &self.config))
                .unwrap_or_default();
            let version = old.as_ref().map(|old| old.version);
            let last_week = last_week::change(
                (history, &effective),
                version,
                current.is_some(),
                (evaluated_on, today),
                &self.config,
            );
            let days = kept_days::changes(
                (history, &effective),
                version,
                current.is_some(),
                days,
                &self.config,
            );
            Ok(Delta {
                before,
                after,
                last_week,
                days,
            })
        });
        Evaluated {
            id: id.clone(),
            current: current.map(|c| self.kept(&c, &effective, settled, today)),
            trusts: history::trusts_of(&effective),
            delta,
        }
    }

    /// A pathway's state as the projection keeps it, from its `effective`
    /// events (settled by `settled`: `Settled::of` them), evaluated on
    /// `today`.
    fn kept(
        &self,
        current: &Current,
        effective: &[openptl_rules::EffectiveEvent],
        settled: Option<Settled>,
        today: NaiveDate,
    ) -> Kept {
        let earlier = earlier_states(effective, today, &self.config);
        Kept::of(current, settled, &earlier, &self.packer)
    }

    /// The states that evaluation on `today` would only move
    /// ([`Projection::moved`]), moved, by their index; on every core, in
    /// parts (never copied into one list).
    fn moved_states(&self, data: &ProjectionData, today: NaiveDate) -> Vec<Vec<(usize, Kept)>> {
        let chunks: Vec<(usize, &[(PathwayKey, PathwayEntry)])> = (data.pathways.as_slice())
            .chunks(UNPACK_SLICE)
            .enumerate()
            .map(|(n, chunk)| (n * UNPACK_SLICE, chunk))
            .collect();
        fold::par_batches(&chunks, |(first, chunk)| {
            let moved = (chunk.iter().enumerate())
                .filter_map(|(k, (_, entry))| Some((first + k, self.moved(entry, today)?)))
                .collect::<Vec<_>>();
            Some(moved)
        })
    }

    /// A pathway's state moved to `today`, when that is what evaluating it
    /// again from its history would keep, byte for byte (decision 219):
    /// - it has no record since it was evaluated (its version is its
    ///   number of records), so its events are the same;
    /// - they are settled by the date it was evaluated on and by `today`
    ///   ([`Settled::covers`]), so [`PathwayState::moved_to`] gives the
    ///   state evaluation gives;
    /// - it would keep no earlier state on `today`
    ///   ([`earlier::keeps_none`]), so nothing else kept depends on the
    ///   date; and its trusts depend on its events alone.
    ///
    /// `None` otherwise (or when the state cannot be unpacked): it is read
    /// back and evaluated.
    fn moved(&self, entry: &PathwayEntry, today: NaiveDate) -> Option<Kept> {
        let packed = entry.state.as_ref()?;
        let (_, from) = packed.on_ptl_settled_from();
        if !earlier::keeps_none(from?, today) {
            return None;
        }
        let settled = packed.settled()?;
        let current = self.packer.current(packed).ok()?;
        if current.version != entry.positions.len() as u64
            || !settled.covers(current.state.as_of, today)
        {
            return None;
        }
        let state = current.state.into_moved(today);
        let current = Current {
            row: PtlRow::of(&state, &self.config).map(Box::new),
            state,
            version: current.version,
        };
        Some(Kept::of(&current, Some(settled), &[], &self.packer))
    }

    /// The state a refresh replacing it would keep of a pathway with
    /// `history`, evaluated on `today` ([`ReplacedStates`]): packed, with
    /// its CWT record months of those today's aggregates index.
    fn replaced_state(
        &self,
        history: &[RecordedEvent],
        today: NaiveDate,
    ) -> Option<(CwtMonths, Box<[u8]>)> {
        let effective = effective_or_logged(history)?;
        let current = current_from(&effective, history.len() as u64, today, &self.config)?;
        let months = CwtMonths::of(
            crate::aggregates::cwt_months_from(today),
            openptl_rules::cwt::record_months(&current.state),
        );
        let kept = self.kept(&current, &effective, Settled::of(&effective), today);
        Some((months, kept.packed.as_bytes().into()))
    }

    /// Re-evaluates every pathway changed since the last refresh (all of them
    /// when the date moved on, those it can moved instead: decision 219),
    /// then publishes the position. On a failure to read the log nothing is
    /// published (nor moved) and the pathways stay to be done.
    pub fn refresh(&self, today: NaiveDate) -> Result<(), AppError> {
        /// Clears `settling` however the refresh ends (a panic included).
        struct SettlingEnds<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for SettlingEnds<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::Release);
            }
        }
        let _ends = SettlingEnds(&self.settling);
        self.refresh_on(today)
    }

    /// [`Self::refresh`], setting `settling` when the day is new.
    fn refresh_on(&self, today: NaiveDate) -> Result<(), AppError> {
        let started = std::time::Instant::now();
        let bulk = self.bulk.load(std::sync::atomic::Ordering::Relaxed);
        let (dirty, position, new_day) = {
            let mut data = self.write();
            let new_day = data.today != Some(today);
            if new_day {
                // Cleared when this refresh returns, its aggregates built.
                self.settling
                    .store(true, std::sync::atomic::Ordering::Release);
            }
            if new_day {
                let all: Vec<PathwayKey> = data.pathways.keys().cloned().collect();
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
            // The states records since replace, kept before the new ones
            // are put in their place (decision 162).
            if let Some(store) = self.replaced.as_ref().filter(|s| s.is_ready()) {
                let replaced = replaced_by(&data, &dirty, everything);
                if let Err(e) = store.keep(&replaced) {
                    // Views read those pathways back instead.
                    tracing::warn!(error = %e, "replaced states not kept");
                }
            }
            // On a new day, the states evaluation would only move to it are
            // moved (decision 219); the rest are read back.
            let moved = match new_day && dirty.len() > bulk {
                true => self.moved_states(&data, today),
                false => Vec::new(),
            };
            let outcome = if dirty.len() > bulk {
                let mut read_back = vec![true; data.pathways.len()];
                for (index, _) in moved.iter().flatten() {
                    read_back[*index] = false;
                }
                let mut pathways: Vec<fold::PathwayRecords> = (data.pathways.as_slice().iter())
                    .zip(read_back)
                    .filter(|((id, _), read)| *read && (everything || dirty.contains(id)))
                    .map(|((id, entry), _)| (id.clone(), entry.positions.to_vec()))
                    .collect();
                // In the order of their first records: reads go forwards.
                pathways.sort_unstable_by_key(|(_, positions)| positions.first().copied());
                fold::fold_pathways(
                    self.log.as_ref(),
                    &self.runtime,
                    position,
                    &pathways,
                    |id, history| self.evaluated(id, history.unwrap_or_default(), today, None),
                )
            } else {
                let entries: Vec<(&PathwayKey, &PathwayEntry)> = dirty
                    .iter()
                    .filter_map(|id| data.pathways.get_key_value(id))
                    .collect();
                let evaluated_on = data.today.unwrap_or_default();
                // Dates kept after this are checked, when kept, to change
                // with none of the records folded in by then.
                let days = kept_days::lock(&data.kept_days).dates();
                let loaded = par_filter_map(&entries, |(id, entry)| {
                    Some(self.history_blocking(id, entry).map(|history| {
                        let old = (entry.state.as_ref(), evaluated_on, &days[..]);
                        self.evaluated(id, &history, today, Some(old))
                    }))
                });
                loaded.into_iter().collect::<Result<Vec<_>, _>>()
            };
            drop(data);
            match outcome {
                Ok(evaluated) => (evaluated, moved),
                Err(e) => {
                    // The read guard is gone: taking the write lock under it
                    // would wait for itself, and every view behind it.
                    self.write().dirty.extend(dirty);
                    return Err(e);
                }
            }
        };
        let (evaluated, moved) = evaluated;
        let moved_count: usize = moved.iter().map(Vec::len).sum();
        #[cfg(test)]
        self.moved
            .fetch_add(moved_count, std::sync::atomic::Ordering::Relaxed);
        let evaluated_after = started.elapsed();
        {
            let mut data = self.write();
            // The new date is announced together with the states evaluated on
            // it: until then, views for the new date take the slow path.
            if new_day {
                // Every pathway is re-evaluated or moved below: its cells
                // in last Sunday's return as of the old Sunday taken away,
                // as of the new one added.
                data.today = Some(today);
                // Its clocks off the PTL are kept under the new day's weeks.
                let moved_on = data.aggregates.as_mut().map(|a| a.new_day(today));
                if moved_on == Some(false) {
                    data.drop_aggregates();
                }
            }
            if moved_count > 0 {
                // What they add to the aggregates moved with them: built
                // afresh below.
                data.drop_aggregates();
            }
            for (index, kept) in moved.into_iter().flatten() {
                // The runner is the only writer: the index found under the
                // read lock still names the pathway.
                debug_assert_eq!(
                    data.pathways.as_slice()[index].1.positions.len() as u64,
                    kept.packed.version()
                );
                data.install_state_at(index, Some(kept));
            }
            for Evaluated {
                id,
                current,
                trusts,
                delta,
            } in evaluated
            {
                match delta {
                    // Looked up only for a delta to apply (never in bulk).
                    Some(Ok(delta)) if data.aggregates.is_some() => {
                        let index = data.pathways.find(&id);
                        match (index, &mut data.aggregates) {
                            (Some(index), Some(aggregates)) => {
                                aggregates.apply(index, &delta.before, -1);
                                aggregates.apply(index, &delta.after, 1);
                                if let (Some(last), Some((before, after))) =
                                    (&mut data.last_week, &delta.last_week)
                                {
                                    last.apply(before, -1);
                                    last.apply(after, 1);
                                }
                                kept_days::unpoisoned(&mut data.kept_days).apply(&delta.days);
                            }
                            // Not projected: built afresh below.
                            _ => data.drop_aggregates(),
                        }
                    }
                    Some(Ok(_)) => {}
                    // Evaluated in bulk, or an old state unreadable: built
                    // afresh below.
                    None | Some(Err(_)) => data.drop_aggregates(),
                }
                data.install(&id, current, trusts);
            }
            // Published with the states that hold it, under the same lock:
            // a view reads states and position together, and never sees
            // states ahead of the position it reports.
            self.published.send_replace(position);
        }
        if let Some(store) = self.replaced.as_ref().filter(|_| new_day) {
            // The record dates past views keep start later each day (after
            // the head when none is recent).
            let data = self.read();
            let first = data.record_days.first().unwrap_or(data.position + 1);
            drop(data);
            store.prune(first);
        }
        if dirty.len() > bulk {
            // Copied under the read lock, swapped in under the write lock,
            // the old copies freed after it (the runner is the only writer,
            // so the map does not change in between).
            let installed_after = started.elapsed();
            let fresh = self.read().laid_out();
            let old = self.write().lay_out(fresh);
            drop(old);
            tracing::info!(
                pathways = dirty.len(),
                moved = moved_count,
                position,
                evaluated_ms = evaluated_after.as_millis() as u64,
                installed_ms = (installed_after - evaluated_after).as_millis() as u64,
                ms = started.elapsed().as_millis() as u64,
                "projection re-evaluated many pathways"
            );
        }
        self.build_aggregates();
        Ok(())
    }
}

mod cache;
mod data;
mod earlier;
mod pathways;
mod record_days;
mod replaced;
mod runner;
mod snapshots;
mod todays_aggregates;
mod trust_sets;

use cache::HistoryCache;
use data::own_records;
pub(crate) use data::unpack_failed;
use earlier::earlier_states;
pub use pathways::{PathwayKey, Pathways};
pub(crate) use record_days::RecordDays;
use record_days::{date_affected, record_days_from};
pub(crate) use replaced::{CwtMonths, Found, ReplacedStates};
pub(crate) use runner::{run, snapshot_periodically};
pub use snapshots::{PreparedSnapshot, SnapshotPreload};
#[cfg(test)]
mod tests;
