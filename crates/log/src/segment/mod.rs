//! The durable log (SPEC 9): append-only segment files are the truth; sled
//! holds only what can be rebuilt from them (stream → positions, event id →
//! position). Where each position lies (file and offset) is a dense array in
//! memory, filled by the start-up scan and extended by the writer.
//!
//! Writes go through one writer thread that gathers concurrent requests into
//! a group, writes the group with one `write` and one `fdatasync`, and only
//! then answers: no append is acknowledged before it is on disk. The group's
//! index entries are held in memory (`Unindexed`) until a second thread, the
//! indexer, has written them to sled, so look-ups see them either way and
//! the writer never waits for sled. sled is not fsync'd: after a crash it may
//! be behind the segments, and start-up indexes what it is missing.
//!
//! Event ids are also kept in a Bloom filter, so the writer's uniqueness
//! check of a new id (almost always absent) costs no sled look-up.

mod anchors;
mod background;
mod backup;
mod files;
mod index;
mod locations;
mod mapped;
mod record;
mod scan;
mod writer;

use background::*;
use files::*;
pub use files::{rebuild_index, OpenError};
use locations::*;
use mapped::*;
use scan::*;
pub use scan::{scan, verify, Located, ScanEnd, VerifyReport};
use std::sync::PoisonError;
use writer::*;

pub use backup::{backup, restore, BackupReport, Progress, MANIFEST};

use foldhash::{HashMap, HashMapExt};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{oneshot, watch};
use uuid::Uuid;

use crate::{
    apply_plan, check_verbatim, plan_batch, Appended, EventLog, Failure, InPlace, LogError,
    LogStats, NewRecord, Planned, RecordRef, StoredRecord,
};
pub use anchors::verify_anchors;
use record::Damage;
pub use record::Hash;

/// The SHA-256 a record has in the hash chain after `prev` (the next
/// record's `prev_hash`): the segment encoding's, whatever the backend.
pub fn record_hash(record: &StoredRecord, prev: &Hash) -> Hash {
    let mut scratch = Vec::with_capacity(256 + record.payload.len());
    record::encode(record, prev, &mut scratch)
}

/// Size after which a new segment file is started.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Memory sled may use to cache the index (its default is 1 GiB). Only the
/// indexer thread and look-ups of existing ids use sled, never the answer to
/// an append, so a small cache costs no append speed (256 MiB and 64 MiB
/// measured the same); look-ups beyond it read from the page cache.
const INDEX_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Stream versions the writer keeps at hand; beyond it, the index answers.
const CACHED_STREAM_VERSIONS: usize = 100_000;
/// Most requests folded into one group commit.
const MAX_GROUP: usize = 512;
/// While writes fail, how often the writer probes whether the disk takes
/// them again.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// The size of that probe: room for a few typical groups.
const PROBE_BYTES: usize = 1024 * 1024;
/// Most bytes (estimated by [`request_bytes`]) folded into one group
/// commit: a segment then never grows past 4 GiB (a segment rolls before a
/// group that would take it past [`SEGMENT_BYTES`]), so every record's
/// offset in its segment fits in 4 bytes ([`Locations`]).
const MAX_GROUP_BYTES: usize = 256 * 1024 * 1024;
/// Largest segment size a log may be opened with (see [`MAX_GROUP_BYTES`]).
const MAX_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;

/// Groups the writer may hand the indexer before it waits for sled to catch
/// up (bounds the index entries held in memory).
const INDEX_QUEUE: usize = 64;
/// Records the indexer writes to sled between reopenings of it
/// ([`reopen_index`]). Tests reopen often.
const REOPEN_INDEX_AFTER: u64 = if cfg!(test) { 5 } else { 1_000_000 };
/// Most records the indexer writes to sled in one batch.
const INDEX_BATCH: usize = 20_000;
/// Niceness of the indexer thread (Linux; 0 is normal, 19 the lowest).
const INDEXER_NICE: i32 = 10;
/// Niceness of the thread filling the event-id filter after open: the
/// lowest, so a start-up's projection work comes first (until the filter is
/// complete, uniqueness checks ask sled, which is slower, never wrong).
const ID_FILTER_NICE: i32 = 19;
/// How long after the open the background check waits for the owner's
/// start-up to finish ([`EventLog::start_up_done`]) before it starts anyway:
/// run beside a start-up, it took a third of the CPU and slowed the
/// projection's restore by half. Tests start it at once.
const CHECK_AT_THE_LATEST: std::time::Duration =
    std::time::Duration::from_secs(if cfg!(test) { 0 } else { 60 });
/// False-positive rate of the event-id filter at its planned size.
const ID_FILTER_FALSE_POSITIVES: f64 = 0.01;

/// The segment + sled log.
pub struct SegmentLog {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Job>>,
    writer: Option<JoinHandle<()>>,
    indexer: Option<JoinHandle<()>>,
    id_filler: Option<JoinHandle<()>>,
}

/// Bytes read at once by a sequential scan.
const SCAN_CHUNK: usize = 4 * 1024 * 1024;

/// Bytes read at once when fetching a record (most records are smaller).
const READ_AHEAD: usize = 1024;

/// What the writer and readers share.
struct Shared {
    segments_dir: PathBuf,
    /// The sled index. Written only by the indexer (and the open), which
    /// also takes it away for a moment to reopen it ([`reopen_index`]);
    /// `None` only when that reopening failed (appends are then refused).
    index: std::sync::RwLock<Option<sled::Db>>,
    index_dir: PathBuf,
    /// Times the indexer has reopened sled since the log opened.
    index_reopenings: std::sync::atomic::AtomicU64,
    files: Mutex<HashMap<u32, Arc<File>>>,
    head: watch::Sender<u64>,
    /// The head position and the hash of the record there, replaced
    /// together by the writer just before `head` moves to that position
    /// ([`EventLog::chain_head`]): never a hash of another position.
    chain_head: Mutex<crate::ChainHead>,
    /// The data directory (where the damage mark goes).
    data_dir: PathBuf,
    /// The last position up to which the hash chain is checked: by the
    /// background check for the records stored at open, by construction for
    /// those the writer appends.
    verified: std::sync::atomic::AtomicU64,
    /// Damage the background check found: appends are refused.
    damage: Mutex<Option<String>>,
    /// Set (and notified) when the owner's start-up is done: the background
    /// check waits for it, or for [`CHECK_AT_THE_LATEST`].
    start_up_done: (Mutex<bool>, std::sync::Condvar),
    /// Where each record is: derived like the index, rebuilt by the start-up
    /// scan, extended by the writer before the head moves. A dense array
    /// costs about 2.25 bytes a record ([`Locations`]) and no index write.
    locations: std::sync::RwLock<Locations>,
    /// Index entries of records on disk that the indexer has not yet
    /// written to sled. Added by the writer before the head moves, removed
    /// by the indexer after sled has them: a look-up reads here first, then
    /// sled, and so never misses a record.
    unindexed: Mutex<Unindexed>,
    /// Every stored event id (and, rarely, a false positive): once
    /// `ids_ready`, an id it does not hold is not stored. Sized at open for
    /// twice the log; past that it answers "maybe" more often, which costs
    /// look-ups, never correctness. Filled after open by a background
    /// thread (the records already there) and by the writer (new ones).
    ids: fastbloom::AtomicBloomFilter,
    /// Set once every record stored at open is in `ids`.
    ids_ready: std::sync::atomic::AtomicBool,
    /// Set when the log closes: background work stops.
    closing: std::sync::atomic::AtomicBool,
    /// The data directory's lock, held while the log is open.
    _lock: File,
    /// Set when sled refused an index write: appends stop until a restart
    /// (which re-indexes from the segments).
    index_failed: Mutex<Option<String>>,
    /// Why the writer cannot write now, while that lasts ([`Writer::take_back`]):
    /// `/readyz` fails meanwhile ([`EventLog::unavailable`]).
    not_writing: Mutex<Option<String>>,
    /// Held by a test to keep the indexer from writing to sled.
    #[cfg(test)]
    index_paused: Mutex<()>,
}

/// Index entries waiting for sled.
#[derive(Default)]
struct Unindexed {
    events: HashMap<Uuid, u64>,
    /// Stream → (version, position), in version order.
    streams: HashMap<String, Vec<(u64, u64)>>,
}

/// One group's index entries, for the indexer.
struct IndexJob {
    /// (stream, version, event id, position) of each record, in order.
    entries: Vec<(String, u64, Uuid, u64)>,
}

impl SegmentLog {
    /// Opens (or creates) the log in `dir`: recovers the tail, brings the
    /// index up to date, starts the writer.
    pub fn open(dir: &Path) -> Result<SegmentLog, OpenError> {
        Self::open_with_segment_size(dir, SEGMENT_BYTES)
    }

    /// As [`SegmentLog::open`], rolling to a new segment after `segment_bytes`
    /// (small sizes let tests cross many segments).
    pub fn open_with_segment_size(dir: &Path, segment_bytes: u64) -> Result<SegmentLog, OpenError> {
        let segment_bytes = segment_bytes.min(MAX_SEGMENT_BYTES);
        let segments_dir = dir.join("segments");
        let created = !segments_dir.exists();
        fs::create_dir_all(&segments_dir).map_err(|e| io("creating the data directory", e))?;
        if created {
            // The directories' own entries, so the first segment (synced
            // into `segments/` when made) cannot be lost with them.
            let parent = dir.parent().map(|p| {
                if p.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    p
                }
            });
            for d in [Some(dir), parent].into_iter().flatten() {
                sync_dir(d).map_err(|e| io("syncing the data directory", e))?;
            }
        }
        let lock = lock_data_dir(dir)?;
        if let Some(damage) = recorded_damage(dir) {
            return Err(damage);
        }
        if let Some(why) = backup::unfinished_copy(dir) {
            return Err(OpenError::Io(crate::Failure::new(why)));
        }
        let index_dir = dir.join("index");
        let started = std::time::Instant::now();
        let mut index = match open_index_patiently(&index_dir) {
            Ok(db) => db,
            // Never taken for damage: the index may be in use.
            Err(e) if lock_held(&e) => {
                return Err(io("opening the index (is another process using it?)", e));
            }
            Err(e) => {
                // The index is derived: a damaged one is rebuilt, never trusted.
                tracing::warn!(error = %e, "the sled index could not be opened; rebuilding it from the segments");
                fs::remove_dir_all(&index_dir).map_err(|e| io("removing the damaged index", e))?;
                open_index(&index_dir).map_err(|e| io("creating the index", e))?
            }
        };
        let index_opened = started.elapsed();
        // After sled, not beside it: run together, sled's open slowed the
        // snapshot decode that start-up waits for more than it saved.
        let read = |e: sled::Error| io("reading the index", e);
        if let Some(layout) = index::newer(&index).map_err(read)? {
            return Err(OpenError::Newer(index::newer_message(layout)));
        }
        let current = index::is_current(&index).map_err(read)?;
        let indexed = index::indexed(&index).map_err(read)?;
        // The index only holds records already synced and answered: the
        // segments must reach its mark (a tail short of it is damage, not a
        // torn write).
        let scanned = scan_for_open(&segments_dir, if current { indexed } else { 0 })?;
        let stored_bytes: u64 = list_segments(&segments_dir)?
            .iter()
            .filter_map(|(_, path)| fs::metadata(path).ok())
            .map(|m| m.len())
            .sum();
        let ids = id_filter(stored_bytes);
        let caught_up = if !current {
            tracing::warn!(
                layout = index::LAYOUT,
                "the index is of an earlier layout; rebuilding it from the segments (once)"
            );
            index = recreate_index(index, &index_dir)?;
            index_from(&index, &segments_dir, 0, &scanned)?;
            scanned.0.head
        } else {
            index_from(&index, &segments_dir, indexed, &scanned)?;
            scanned.0.head - indexed
        };
        if caught_up > REOPEN_INDEX_AFTER {
            // As the indexer does: checkpoint a large catch-up now.
            index = reopen(index, &index_dir).map_err(|e| io("reopening the index", e))?;
        }
        let (end, locations) = scanned;
        index.flush().map_err(|e| io("flushing the index", e))?;

        let path = segments_dir.join(segment_name(end.segment));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("opening the segment", e))?;
        sync_dir(&segments_dir).map_err(|e| io("syncing the data directory", e))?;
        let shared = Arc::new(Shared {
            segments_dir,
            index: std::sync::RwLock::new(Some(index)),
            index_dir,
            index_reopenings: std::sync::atomic::AtomicU64::new(0),
            files: Mutex::new(HashMap::new()),
            head: watch::channel(end.head).0,
            chain_head: Mutex::new(crate::ChainHead {
                position: end.head,
                hash: end.last_hash,
            }),
            data_dir: dir.to_path_buf(),
            verified: std::sync::atomic::AtomicU64::new(0),
            damage: Mutex::new(None),
            start_up_done: (Mutex::new(false), std::sync::Condvar::new()),
            locations: std::sync::RwLock::new(locations),
            unindexed: Mutex::new(Unindexed::default()),
            ids,
            ids_ready: std::sync::atomic::AtomicBool::new(end.head == 0),
            closing: std::sync::atomic::AtomicBool::new(false),
            _lock: lock,
            index_failed: Mutex::new(None),
            not_writing: Mutex::new(None),
            #[cfg(test)]
            index_paused: Mutex::new(()),
        });
        let id_filler = if end.head > 0 {
            let shared = shared.clone();
            let (head, last_segment) = (end.head, end.segment);
            Some(
                std::thread::Builder::new()
                    .name("openptl-log-check".into())
                    .spawn(move || check_in_background(&shared, head, last_segment))
                    .map_err(|e| io("starting the background check", e))?,
            )
        } else {
            None
        };
        let (to_indexer, index_jobs) = mpsc::sync_channel::<IndexJob>(INDEX_QUEUE);
        let indexer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("openptl-log-indexer".into())
                .spawn(move || run_indexer(&shared, index_jobs))
                .map_err(|e| io("starting the indexer", e))?
        };
        let mut writer = Writer {
            shared: shared.clone(),
            file,
            segment: end.segment,
            segment_len: end.segment_len,
            head: end.head,
            last_hash: end.last_hash,
            last_time: end.last_recorded_at,
            versions: HashMap::new(),
            failed: None,
            failing: None,
            segment_bytes,
            indexer: to_indexer,
        };
        let (tx, rx) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("openptl-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| io("starting the writer", e))?;
        tracing::info!(
            head = end.head,
            segment = end.segment,
            index_open_ms = index_opened.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "event log open"
        );
        Ok(SegmentLog {
            shared,
            requests: Some(tx),
            writer: Some(handle),
            indexer: Some(indexer),
            id_filler,
        })
    }
}

impl Drop for SegmentLog {
    fn drop(&mut self) {
        self.shared
            .closing
            .store(true, std::sync::atomic::Ordering::Release);
        {
            // Holding the lock: the check cannot miss the notification
            // between testing `closing` and waiting.
            let _done = self
                .shared
                .start_up_done
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            self.shared.start_up_done.1.notify_all();
        }
        if let Some(handle) = self.id_filler.take() {
            let _ = handle.join();
        }
        // Closing the queue lets the writer finish what it has, then stop.
        self.requests.take();
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        // The writer's end closed the indexer's queue: it finishes, then stops.
        if let Some(handle) = self.indexer.take() {
            let _ = handle.join();
        }
        let _ = self.shared.with_index(|index| index.flush());
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Shared {
    /// `f` on the sled index (an error while the indexer could not reopen it).
    fn with_index<T>(&self, f: impl FnOnce(&sled::Db) -> sled::Result<T>) -> Result<T, LogError> {
        let slot = self.index.read().unwrap_or_else(PoisonError::into_inner);
        let index = slot.as_ref().ok_or_else(|| {
            LogError::storage("the index could not be reopened; restart the service")
        })?;
        f(index).map_err(|e| {
            if matches!(e, sled::Error::Io(_)) {
                self.index_failing(&e);
            }
            Self::storage(e)
        })
    }

    /// Notes that the index failed (sled's I/O on a full or failing disk,
    /// met by the indexer's write or by a lookup that triggered sled's
    /// flush, whichever comes first): appends are refused from now on,
    /// reads go on. The first reason is kept and logged once.
    pub(super) fn index_failing(&self, e: &dyn std::fmt::Display) {
        let mut failed = self
            .index_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if failed.is_none() {
            tracing::error!(error = %e, "the index could not be written; appends are refused until restart");
            *failed = Some(e.to_string());
        }
    }

    fn file(&self, segment: u32) -> std::io::Result<Arc<File>> {
        let mut files = self.files.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(f) = files.get(&segment) {
            return Ok(f.clone());
        }
        let file = Arc::new(File::open(self.segments_dir.join(segment_name(segment)))?);
        files.insert(segment, file.clone());
        Ok(file)
    }

    /// A failure to read the log, its cause kept.
    fn storage(e: impl std::error::Error + Send + Sync + 'static) -> LogError {
        LogError::Storage(Failure::caused_by("reading the event log", e))
    }

    /// Where every record is, to read.
    fn read_locations(&self) -> std::sync::RwLockReadGuard<'_, Locations> {
        self.locations
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the record at `position` is.
    fn location(&self, position: u64) -> Result<(u32, u64), LogError> {
        shared_location(&self.read_locations(), position)
    }

    /// Reads the record at a global position (which must be stored).
    fn read_position(&self, position: u64) -> Result<StoredRecord, LogError> {
        let (segment, offset) = self.location(position)?;
        let file = self.file(segment).map_err(Self::storage)?;
        // One read covers most records; a longer one takes a second read.
        let mut bytes = vec![0u8; READ_AHEAD];
        let got = read_at_most(&file, &mut bytes, offset).map_err(Self::storage)?;
        bytes.truncate(got);
        let damaged =
            |d: Damage| LogError::storage(format!("segment {segment} offset {offset}: {d:?}"));
        let len = record::claimed_len(&bytes).map_err(damaged)?;
        if len > bytes.len() {
            bytes.resize(len, 0);
            file.read_exact_at(&mut bytes[got..], offset + got as u64)
                .map_err(Self::storage)?;
        }
        let decoded = record::decode(&bytes[..len]).map_err(damaged)?;
        Ok(decoded.record)
    }

    /// Reads up to `max` records from `from` (not past `head`) by scanning
    /// the segments in large reads: one index look-up, then sequential I/O.
    fn read_sequential(
        &self,
        from: u64,
        max: usize,
        head: u64,
    ) -> Result<Vec<StoredRecord>, LogError> {
        if from > head || max == 0 {
            return Ok(Vec::new());
        }
        let to = head.min(from.saturating_add(max as u64 - 1));
        let (mut segment, mut offset) = self.location(from)?;
        let mut out = Vec::with_capacity((to - from + 1) as usize);
        let mut buffer: Vec<u8> = Vec::new();
        let mut at = 0usize; // start of the next record within `buffer`
                             // Reads sized to what is asked (a live subscriber asks for a few
                             // records), growing to SCAN_CHUNK for a long catch-up.
        let mut chunk = ((to - from + 1) as usize * 512).clamp(4096, SCAN_CHUNK);
        while out.len() < (to - from + 1) as usize {
            // A batch's mark between records (decision 189): passed over
            // once whole, else read on.
            let mark = record::mark_len(&buffer[at..]);
            if mark > 0 && buffer.len() - at >= mark {
                at += mark;
                continue;
            }
            let next = match mark {
                0 => record::decode(&buffer[at..]),
                _ => Err(Damage::Truncated),
            };
            match next {
                Ok(decoded) => {
                    at += decoded.len;
                    out.push(decoded.record);
                }
                Err(Damage::Truncated) => {
                    // Refill: keep the partial record, read the next chunk.
                    let file = self.file(segment).map_err(Self::storage)?;
                    let carried = buffer.len() - at;
                    buffer.drain(..at);
                    at = 0;
                    buffer.resize(carried + chunk, 0);
                    chunk = (chunk * 2).min(SCAN_CHUNK);
                    let got = read_at_most(&file, &mut buffer[carried..], offset)
                        .map_err(Self::storage)?;
                    buffer.truncate(carried + got);
                    offset += got as u64;
                    if got == 0 {
                        if carried > 0 {
                            return Err(LogError::storage(format!(
                                "segment {segment} ends inside a record"
                            )));
                        }
                        segment += 1;
                        offset = 0;
                    }
                }
                Err(d) => {
                    return Err(LogError::storage(format!(
                        "segment {segment} near offset {offset}: {d:?}"
                    )))
                }
            }
        }
        Ok(out)
    }

    /// Moves the head to `head`, whose record hashes to `hash`: the chain
    /// head first, so that it is never behind the head it belongs to.
    fn publish(&self, head: u64, hash: Hash) {
        *self
            .chain_head
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = crate::ChainHead {
            position: head,
            hash,
        };
        self.head.send_replace(head);
    }

    /// Damage the background check found.
    fn damage(&self) -> Option<String> {
        self.damage
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn unindexed(&self) -> std::sync::MutexGuard<'_, Unindexed> {
        self.unindexed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the event with `id` is: the entries waiting for sled first, then
    /// sled (the indexer removes an entry only once sled has it).
    /// The record stored with event id `id`, if any.
    fn stored_event(&self, id: &Uuid) -> Result<Option<StoredRecord>, LogError> {
        match self.position_of_event(id)? {
            Some(position) => self.read_position(position).map(Some),
            None => Ok(None),
        }
    }

    fn position_of_event(&self, id: &Uuid) -> Result<Option<u64>, LogError> {
        if self.ids_ready.load(std::sync::atomic::Ordering::Acquire) && !self.ids.contains(id) {
            return Ok(None);
        }
        if let Some(p) = self.unindexed().events.get(id) {
            return Ok(Some(*p));
        }
        self.with_index(|index| index::event_position(index, id))
    }

    fn stream_version(&self, stream: &str) -> Result<u64, LogError> {
        if let Some((v, _)) = self.unindexed().streams.get(stream).and_then(|s| s.last()) {
            return Ok(*v);
        }
        self.with_index(|index| index::stream_version(index, stream))
    }
}

impl SegmentLog {
    /// The acknowledged records whose stream `keep` accepts (it sees the
    /// stream id's bytes) and that `wanted` accepts, read from the segments
    /// themselves: how look-ups are answered while the index cannot be read
    /// (`failed` says why). sled on a full or failing disk refuses even a
    /// read that would tidy one of its pages, and reads must go on (SPEC 9).
    /// A scan of the whole log, so only then, and off the async workers.
    async fn read_past_the_index(
        &self,
        failed: LogError,
        keep: impl Fn(&[u8]) -> bool + Send + 'static,
        wanted: impl Fn(&RecordRef<'_>) -> bool + Send + 'static,
    ) -> Result<Vec<StoredRecord>, LogError> {
        tracing::debug!(error = %failed, "the index cannot be read: a look-up scans the segments");
        let shared = self.shared.clone();
        let head = self.head();
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            if head > 0 {
                Mapped::new(&shared, head)?.visit(1, head, &keep, &mut |record| {
                    if wanted(&record) {
                        found.push(record.to_stored());
                    }
                })?;
            }
            Ok(found)
        })
        .await
        .map_err(Shared::storage)?
    }
}

#[async_trait]
impl EventLog for SegmentLog {
    async fn append(&self, batch: Vec<NewRecord>) -> Result<Vec<Appended>, LogError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.requests
            .as_ref()
            .expect("the writer runs while the log is open")
            .send(Job::Append(Request { batch, reply }))
            .map_err(|_| LogError::storage("the log writer has stopped"))?;
        answer
            .await
            .map_err(|_| LogError::storage("the log writer has stopped"))?
    }

    async fn append_verbatim(&self, records: Vec<StoredRecord>) -> Result<(), LogError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .as_ref()
            .expect("the writer runs while the log is open")
            .send(Job::Verbatim(Verbatim { records, reply }))
            .map_err(|_| LogError::storage("the log writer has stopped"))?;
        answer
            .await
            .map_err(|_| LogError::storage("the log writer has stopped"))?
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<StoredRecord>, LogError> {
        // Index look-ups and page-cache reads take microseconds: done inline
        // rather than paying a thread hop per stream.
        // Waiting entries first, then sled: an entry the indexer moves in
        // between is in both (and kept once), never in neither.
        let waiting: Vec<(u64, u64)> = self
            .shared
            .unindexed()
            .streams
            .get(stream_id)
            .cloned()
            .unwrap_or_default();
        let mut positions = match self
            .shared
            .with_index(|index| index::stream_positions(index, stream_id))
        {
            Ok(positions) => positions,
            Err(e) => {
                let wanted = stream_id.to_string();
                return self
                    .read_past_the_index(e, move |stream| stream == wanted.as_bytes(), |_| true)
                    .await;
            }
        };
        let indexed = positions.len() as u64;
        positions.extend(
            waiting
                .into_iter()
                .filter(|(version, _)| *version > indexed)
                .map(|(_, position)| position),
        );
        positions
            .into_iter()
            .map(|p| self.shared.read_position(p))
            .collect()
    }

    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<StoredRecord>, LogError> {
        // Page-cache reads of one stream take microseconds: done inline.
        positions
            .iter()
            .map(|p| self.shared.read_position(*p))
            .collect()
    }

    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<StoredRecord>, LogError> {
        let shared = self.shared.clone();
        let head = self.head();
        tokio::task::spawn_blocking(move || shared.read_sequential(from.max(1), max, head))
            .await
            .map_err(Shared::storage)?
    }

    fn in_place(&self) -> Option<Result<Box<dyn InPlace + '_>, LogError>> {
        Some(Mapped::new(&self.shared, self.head()).map(|m| Box::new(m) as Box<dyn InPlace>))
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredRecord>, LogError> {
        match self.shared.position_of_event(&event_id) {
            Ok(Some(p)) if p <= self.head() => self.shared.read_position(p).map(Some),
            Ok(_) => Ok(None),
            Err(e) => Ok(self
                .read_past_the_index(e, |_| true, move |r| r.event_id == event_id)
                .await?
                .pop()),
        }
    }

    fn head(&self) -> u64 {
        *self.shared.head.borrow()
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    fn damage(&self) -> Option<String> {
        self.shared.damage()
    }

    fn backup(
        &self,
        to: &Path,
        progress: &mut dyn FnMut(Progress),
    ) -> Option<Result<BackupReport, LogError>> {
        Some(
            backup(&self.shared.data_dir, to, progress)
                .map_err(|e| LogError::Storage(Failure::caused_by("the backup", e))),
        )
    }

    async fn chain_head(&self) -> Result<Option<crate::ChainHead>, LogError> {
        Ok(Some(
            *self
                .shared
                .chain_head
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        ))
    }

    fn unavailable(&self) -> Option<String> {
        let failed = self
            .shared
            .index_failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .map(|reason| format!("the index could not be written: {reason}"));
        failed.or_else(|| {
            self.shared
                .not_writing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        })
    }

    fn start_up_done(&self) {
        let (done, notified) = &self.shared.start_up_done;
        *done.lock().unwrap_or_else(PoisonError::into_inner) = true;
        notified.notify_all();
    }

    fn stats(&self) -> LogStats {
        let bytes_on_disk = std::fs::read_dir(&self.shared.segments_dir)
            .ok()
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.metadata().ok())
                    .filter(|m| m.is_file())
                    .map(|m| m.len())
                    .sum()
            });
        LogStats {
            bytes_on_disk,
            index_bytes: self.shared.with_index(|index| index.size_on_disk()).ok(),
            // Appends extend the chain the writer holds, so everything up to
            // the head is chained from what was verified at open.
            verified_position: Some(
                if self
                    .shared
                    .ids_ready
                    .load(std::sync::atomic::Ordering::Acquire)
                {
                    self.head()
                } else {
                    self.shared
                        .verified
                        .load(std::sync::atomic::Ordering::Acquire)
                },
            ),
        }
    }
}

#[cfg(test)]
mod tests;
