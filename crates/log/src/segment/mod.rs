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
mod backup;
mod index;
mod record;

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
    apply_plan, check_verbatim, plan_batch, Appended, EventLog, InPlace, LogError, LogStats,
    NewRecord, RecordRef, StoredRecord,
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

/// About how many bytes a request's records take in a segment.
fn request_bytes(request: &Request) -> usize {
    request
        .batch
        .iter()
        .map(|r| r.payload.len() + r.stream_id.len() + r.event_type.len() + r.actor.len() + 128)
        .sum()
}

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

/// Reads up to `buf.len()` bytes at `offset`, fewer at the end of the file.
fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Maps a segment file for reading (`None` when it is empty, which cannot
/// be mapped). Mapped rather than read: scans read each byte once, and
/// copying every segment into a buffer was a fifth of the start-up scan.
///
/// SAFETY (of the mapping): segments are never changed in place; the writer
/// only appends past the mapped length, and a torn tail is cut off only at
/// open, after the open's scan has dropped its mappings.
fn map_segment(path: &Path) -> std::io::Result<Option<memmap2::Mmap>> {
    let file = File::open(path)?;
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: see above.
    unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map(Some)
}

/// The segments holding the records up to a head, mapped for reading in
/// place ([`EventLog::in_place`]); unmapped when dropped.
struct Mapped<'a> {
    shared: &'a Shared,
    head: u64,
    maps: HashMap<u32, memmap2::Mmap>,
}

impl<'a> Mapped<'a> {
    fn new(shared: &'a Shared, head: u64) -> Result<Mapped<'a>, LogError> {
        let segments: Vec<u32> = {
            let locations = shared.locations.read().unwrap_or_else(|e| e.into_inner());
            let last = match head {
                0 => None,
                _ => Some(shared_location(&locations, head)?.0),
            };
            locations
                .segments
                .iter()
                .map(|(number, _)| *number)
                .take_while(|n| last.is_some_and(|last| *n <= last))
                .collect()
        };
        let mut maps = HashMap::with_capacity(segments.len());
        for number in segments {
            let map = map_segment(&shared.segments_dir.join(segment_name(number)))
                .map_err(|e| LogError::Storage(format!("segment {number}: {e}")))?;
            if let Some(map) = map {
                maps.insert(number, map);
            }
        }
        Ok(Mapped { shared, head, maps })
    }

    /// The bytes from `offset` of a mapped segment.
    fn bytes(&self, segment: u32, offset: u64) -> Result<&[u8], LogError> {
        self.maps
            .get(&segment)
            .and_then(|map| map.get(offset as usize..))
            .filter(|bytes| !bytes.is_empty())
            .ok_or_else(|| {
                LogError::Storage(format!("segment {segment} ends before offset {offset}"))
            })
    }

    fn covers(&self, position: u64) -> Result<(), LogError> {
        if position == 0 || position > self.head {
            return Err(LogError::Storage(format!(
                "position {position} is not stored (the head is {})",
                self.head
            )));
        }
        Ok(())
    }
}

impl Mapped<'_> {
    /// Hands `step` each record from `from` to `to` in order: its segment,
    /// offset, bytes (from its start) and first fields, its length and
    /// position checked.
    fn walk(
        &self,
        from: u64,
        to: u64,
        step: &mut dyn FnMut(u32, u64, &[u8], &record::Head<'_>) -> Result<(), LogError>,
    ) -> Result<(), LogError> {
        let from = from.max(1);
        if from > to {
            return Ok(());
        }
        self.covers(to)?;
        let mut next = from;
        while next <= to {
            let (segment, offset) = self.shared.location(next)?;
            let bytes = self.bytes(segment, offset)?;
            let mut at = 0usize;
            while next <= to && at < bytes.len() {
                let offset = offset + at as u64;
                let head = record::head(&bytes[at..]).map_err(damaged(segment, offset))?;
                if head.position != next {
                    return Err(misplaced(segment, offset, head.position, next));
                }
                step(segment, offset, &bytes[at..], &head)?;
                at += head.len;
                next += 1;
            }
        }
        Ok(())
    }
}

fn shared_location(locations: &Locations, position: u64) -> Result<(u32, u64), LogError> {
    locations
        .get(position)
        .ok_or_else(|| LogError::Storage(format!("position {position} is not stored")))
}

fn damaged(segment: u32, offset: u64) -> impl Fn(Damage) -> LogError {
    move |d| {
        LogError::Storage(format!(
            "segment {segment} offset {offset}: {}",
            d.problem()
        ))
    }
}

fn misplaced(segment: u32, offset: u64, found: u64, expected: u64) -> LogError {
    LogError::Storage(format!(
        "segment {segment} offset {offset}: position {found} where {expected} was expected"
    ))
}

impl InPlace for Mapped<'_> {
    fn head(&self) -> u64 {
        self.head
    }

    fn visit(
        &self,
        from: u64,
        to: u64,
        keep: &dyn Fn(&[u8]) -> bool,
        visit: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<(), LogError> {
        self.walk(from, to, &mut |segment, offset, bytes, head| {
            if keep(head.stream_id) {
                visit(
                    record::view(bytes)
                        .map_err(damaged(segment, offset))?
                        .record,
                );
            }
            Ok(())
        })
    }

    fn visit_streams(
        &self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &[u8]),
    ) -> Result<(), LogError> {
        self.walk(from, to, &mut |_, _, _, head| {
            visit(head.position, head.stream_id);
            Ok(())
        })
    }

    fn visit_positions(
        &self,
        positions: &[u64],
        visit: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<(), LogError> {
        let located: Vec<(u32, u64)> = {
            let locations = self
                .shared
                .locations
                .read()
                .unwrap_or_else(|e| e.into_inner());
            positions
                .iter()
                .map(|p| {
                    self.covers(*p)?;
                    shared_location(&locations, *p)
                })
                .collect::<Result<_, _>>()?
        };
        for (position, (segment, offset)) in positions.iter().zip(located) {
            let bytes = self.bytes(segment, offset)?;
            let viewed = record::view(bytes).map_err(damaged(segment, offset))?;
            if viewed.record.position != *position {
                return Err(misplaced(
                    segment,
                    offset,
                    viewed.record.position,
                    *position,
                ));
            }
            visit(viewed.record);
        }
        Ok(())
    }
}

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
    /// costs 8 bytes a record and no index write.
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

/// Where each record is: its offset in its segment, 4 bytes a record
/// (segments stay below 4 GiB: [`MAX_GROUP_BYTES`]), and the index of each
/// segment's first record. Derived like the index: rebuilt by the start-up
/// scan, extended by the writer before the head moves.
#[derive(Default)]
struct Locations {
    /// `offsets[p - 1]` is the offset of the record at position `p`.
    offsets: Vec<u32>,
    /// (segment number, index in `offsets` of its first record), in order.
    segments: Vec<(u32, usize)>,
}

impl Locations {
    fn with_capacity(records: usize) -> Locations {
        Locations {
            offsets: Vec::with_capacity(records),
            segments: Vec::new(),
        }
    }

    /// Adds the next record's location.
    fn push(&mut self, segment: u32, offset: u64) {
        if self.segments.last().map(|(n, _)| *n) != Some(segment) {
            self.segments.push((segment, self.offsets.len()));
        }
        self.offsets
            .push(u32::try_from(offset).expect("segments stay below 4 GiB (MAX_GROUP_BYTES)"));
    }

    /// The segment and offset of the record at `position`.
    fn get(&self, position: u64) -> Option<(u32, u64)> {
        let i = usize::try_from(position.checked_sub(1)?).ok()?;
        let offset = *self.offsets.get(i)?;
        let segment = self.segments.partition_point(|(_, first)| *first <= i);
        Some((self.segments[segment - 1].0, u64::from(offset)))
    }
}

struct Request {
    batch: Vec<NewRecord>,
    reply: oneshot::Sender<Result<Vec<Appended>, LogError>>,
}

/// Records another log stored, to store as they are.
struct Verbatim {
    records: Vec<StoredRecord>,
    reply: oneshot::Sender<Result<(), LogError>>,
}

/// What the writer is asked to do.
enum Job {
    Append(Request),
    Verbatim(Verbatim),
}

/// Why the log could not be opened. The message names the file and offset.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{file} at offset {offset}: {problem}; the log is damaged and was not opened (run `openptl verify`)")]
    Corrupt {
        file: String,
        offset: u64,
        problem: String,
    },
    #[error("the data directory {dir} is in use by another openptl process (it holds {dir}/LOCK); stop that one first")]
    InUse { dir: String },
    /// Something on disk was written by a newer OpenPTL (decision 91).
    #[error("{0}")]
    Newer(String),
    #[error("{0}")]
    Io(String),
}

fn io(context: &str, e: impl std::fmt::Display) -> OpenError {
    OpenError::Io(format!("{context}: {e}"))
}

fn segment_name(n: u32) -> String {
    format!("{n:08}.seg")
}

fn list_segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>, OpenError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| io("listing segments", e))? {
        let path = entry.map_err(|e| io("listing segments", e))?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(n) = number {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// One record found by a scan, where it lives.
pub struct Located<'a> {
    pub record: &'a StoredRecord,
    pub segment: u32,
    pub offset: u64,
}

/// The end state of a scan.
pub struct ScanEnd {
    pub head: u64,
    pub last_hash: Hash,
    pub last_recorded_at: Option<DateTime<Utc>>,
    pub segment: u32,
    pub segment_len: u64,
}

/// Reads every segment in order, checking magic, CRC, positions and the hash
/// chain. A damaged tail of the last segment is cut off when `repair` is set
/// (reported otherwise); damage anywhere else is an error naming file and offset.
pub fn scan(
    segments_dir: &Path,
    repair: bool,
    mut visit: impl FnMut(Located<'_>),
) -> Result<ScanEnd, OpenError> {
    let segments = list_segments(segments_dir)?;
    let mut end = ScanEnd {
        head: 0,
        last_hash: [0; 32],
        last_recorded_at: None,
        segment: 1,
        segment_len: 0,
    };
    for (i, (number, path)) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        let bytes = fs::read(path).map_err(|e| io(&format!("reading {}", path.display()), e))?;
        let corrupt = |offset: usize, problem: String| OpenError::Corrupt {
            file: path.display().to_string(),
            offset: offset as u64,
            problem,
        };
        let mut at = 0usize;
        while at < bytes.len() {
            match record::decode(&bytes[at..]) {
                Ok(decoded) => {
                    if decoded.record.position != end.head + 1 {
                        return Err(corrupt(
                            at,
                            format!("position {} follows {}", decoded.record.position, end.head),
                        ));
                    }
                    if decoded.prev_hash != end.last_hash {
                        return Err(corrupt(
                            at,
                            "hash chain broken: the previous record was altered".into(),
                        ));
                    }
                    visit(Located {
                        record: &decoded.record,
                        segment: *number,
                        offset: at as u64,
                    });
                    end.head = decoded.record.position;
                    end.last_hash = record::hash(&bytes[at..at + decoded.len]);
                    end.last_recorded_at = Some(decoded.record.recorded_at);
                    at += decoded.len;
                }
                Err(damage) => {
                    let rest = &bytes[at..];
                    let (problem, torn) = match torn_tail(&bytes, at, &damage, end.head) {
                        Ok(()) => (damage.problem(), true),
                        Err(problem) => (problem, false),
                    };
                    if last && torn {
                        // A write torn by a crash: never acknowledged, so it is safe to drop.
                        if repair {
                            tracing::warn!(file = %path.display(), offset = at, bytes = rest.len(), %problem, "cutting off a torn record at the tail of the log");
                            let file = OpenOptions::new()
                                .write(true)
                                .open(path)
                                .map_err(|e| io("opening segment", e))?;
                            file.set_len(at as u64)
                                .map_err(|e| io("truncating torn tail", e))?;
                            file.sync_all().map_err(|e| io("syncing truncation", e))?;
                        } else {
                            tracing::warn!(file = %path.display(), offset = at, %problem, "torn record at the tail (start-up will cut it off)");
                        }
                        break;
                    }
                    return Err(corrupt(at, problem));
                }
            }
        }
        end.segment = *number;
        end.segment_len = at as u64;
    }
    Ok(end)
}

/// What damage found at `at` in a segment is: a write torn by a crash at
/// the tail of the log (`Ok`: safe to cut off, it was never acknowledged),
/// or damage that must refuse the start (`Err`: what to tell the operator).
///
/// A torn write is only ever the last thing in the file: a record that runs
/// past its end, or bytes (zeros, garbage) after which no valid record
/// follows. So the rest of the segment is searched for a record with the
/// magic, a CRC that matches and a position after `after` (the last good
/// one): if there is one, the damage is in the middle of acknowledged
/// records, and cutting there would drop them. A record of a newer format
/// version is never torn: a downgrade must not truncate the log.
fn torn_tail(bytes: &[u8], at: usize, damage: &Damage, after: u64) -> Result<(), String> {
    let problem = damage.problem();
    if matches!(damage, Damage::Newer(_)) {
        return Err(problem);
    }
    // Only the record at `at` is taken for a newer format: the same bytes
    // further on may be inside an event's payload.
    let mut from = at + 1;
    while let Some(found) = memchr::memmem::find(&bytes[from.min(bytes.len())..], record::MAGIC) {
        let k = from + found;
        match record::check(&bytes[k..]) {
            Ok(valid) if valid.position > after => {
                return Err(format!(
                    "{problem}; a valid record (position {}) follows at offset {k}, so this is damage in the middle of the log, not a write torn by a crash",
                    valid.position
                ));
            }
            _ => from = k + 1,
        }
    }
    Ok(())
}

/// One segment checked on its own (CRCs, positions and hash chain within
/// it); [`scan_for_open`] then checks the links between segments.
struct SegmentCheck {
    number: u32,
    path: PathBuf,
    /// Position and `prev_hash` of its first record.
    first: Option<(u64, Hash)>,
    last_position: u64,
    last_hash: Hash,
    last_recorded_at_micros: Option<i64>,
    /// Bytes of whole records before any damage.
    len: u64,
    offsets: Vec<u64>,
    /// Where the first damage is, what it is, and whether it may be cut off
    /// as a torn write ([`torn_tail`]) if this is the last segment.
    damage: Option<(u64, String, bool)>,
}

/// Checks one segment: every record's framing, CRC and position, and, when
/// `chain` is set, the hash chain inside it. The hash of its last record is
/// computed either way (the next segment's first record links to it).
///
/// Records after position `up_to` are left alone (the background check
/// reads the open segment while the writer appends to it), and `visit`
/// sees every record that passed.
fn check_segment(
    number: u32,
    path: &Path,
    chain: bool,
    up_to: u64,
    mut visit: impl FnMut(&record::Checked),
) -> Result<SegmentCheck, OpenError> {
    let reading = |e| io(&format!("reading {}", path.display()), e);
    let map = map_segment(path).map_err(reading)?;
    let bytes = map.as_deref().unwrap_or_default();
    let mut out = SegmentCheck {
        number,
        path: path.to_path_buf(),
        first: None,
        last_position: 0,
        last_hash: [0; 32],
        last_recorded_at_micros: None,
        len: 0,
        offsets: Vec::with_capacity(bytes.len() / 160),
        damage: None,
    };
    let mut at = 0usize;
    let mut last_record = 0..0;
    while at < bytes.len() && !(out.first.is_some() && out.last_position >= up_to) {
        let checked = match record::check(&bytes[at..]) {
            Ok(c) => c,
            Err(damage) => {
                let after = if out.first.is_some() {
                    out.last_position
                } else {
                    0
                };
                out.damage = Some(match torn_tail(bytes, at, &damage, after) {
                    Ok(()) => (at as u64, damage.problem(), true),
                    Err(problem) => (at as u64, problem, false),
                });
                break;
            }
        };
        match out.first {
            None => out.first = Some((checked.position, checked.prev_hash)),
            Some(_) => {
                let problem = if checked.position != out.last_position + 1 {
                    Some(format!(
                        "position {} follows {}",
                        checked.position, out.last_position
                    ))
                } else if chain && checked.prev_hash != record::hash(&bytes[last_record.clone()]) {
                    Some("hash chain broken: the previous record was altered".to_string())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    out.damage = Some((at as u64, problem, false));
                    break;
                }
            }
        }
        if u32::try_from(at).is_err() {
            out.damage = Some((at as u64, "segment longer than 4 GiB".into(), false));
            break;
        }
        visit(&checked);
        out.offsets.push(at as u64);
        out.last_position = checked.position;
        out.last_recorded_at_micros = Some(checked.recorded_at_micros);
        last_record = at..at + checked.len;
        at += checked.len;
        out.len = at as u64;
    }
    if !last_record.is_empty() {
        out.last_hash = record::hash(&bytes[last_record]);
    }
    Ok(out)
}

/// The start-up scan: checks every record's framing, CRC and position, the
/// links between segments and the hash chain inside the last one, segments
/// in parallel and without decoding fields; cuts off a torn tail; returns
/// where each record is. The chain inside the earlier (sealed) segments is
/// checked after the open, in the background ([`check_in_background`],
/// decision 67): hashing every record took most of a 10M-record start.
fn scan_for_open(segments_dir: &Path) -> Result<(ScanEnd, Locations), OpenError> {
    let segments = list_segments(segments_dir)?;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(segments.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut checks: Vec<Option<Result<SegmentCheck, OpenError>>> =
        (0..segments.len()).map(|_| None).collect();
    let done = Mutex::new(&mut checks);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((number, path)) = segments.get(i) else {
                    break;
                };
                let chain = i + 1 == segments.len();
                let checked = check_segment(*number, path, chain, u64::MAX, |_| {});
                done.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(checked);
            });
        }
    });
    let mut end = ScanEnd {
        head: 0,
        last_hash: [0; 32],
        last_recorded_at: None,
        segment: 1,
        segment_len: 0,
    };
    // Room for every record up front: growing 80 MB at 10M records copies.
    let mut locations = Locations::with_capacity(
        checks
            .iter()
            .map(|c| {
                c.as_ref()
                    .map_or(0, |c| c.as_ref().map_or(0, |c| c.offsets.len()))
            })
            .sum(),
    );
    let count = checks.len();
    for (i, checked) in checks.into_iter().enumerate() {
        let c = checked.expect("every segment was checked")?;
        let last = i + 1 == count;
        let corrupt = |offset: u64, problem: String| OpenError::Corrupt {
            file: c.path.display().to_string(),
            offset,
            problem,
        };
        if let Some((position, prev_hash)) = c.first {
            if position != end.head + 1 {
                return Err(corrupt(
                    0,
                    format!("position {position} follows {}", end.head),
                ));
            }
            if prev_hash != end.last_hash {
                return Err(corrupt(
                    0,
                    "hash chain broken: the previous record was altered".into(),
                ));
            }
        }
        if let Some((offset, problem, reaches_end)) = &c.damage {
            if !(last && *reaches_end) {
                return Err(corrupt(*offset, problem.clone()));
            }
            // A write torn by a crash: never acknowledged, so it is safe to drop.
            tracing::warn!(file = %c.path.display(), offset, %problem, "cutting off a torn record at the tail of the log");
            let file = OpenOptions::new()
                .write(true)
                .open(&c.path)
                .map_err(|e| io("opening segment", e))?;
            file.set_len(*offset)
                .map_err(|e| io("truncating torn tail", e))?;
            file.sync_all().map_err(|e| io("syncing truncation", e))?;
        }
        for offset in &c.offsets {
            locations.push(c.number, *offset);
        }
        if c.first.is_some() {
            end.head = c.last_position;
            end.last_hash = c.last_hash;
            end.last_recorded_at = c
                .last_recorded_at_micros
                .and_then(DateTime::<Utc>::from_timestamp_micros);
        }
        end.segment = c.number;
        end.segment_len = c.len;
    }
    Ok((end, locations))
}

/// Records indexed per write by [`index_from`]: bounds the memory a large
/// catch-up takes (about 40 bytes a record) while gathering each stream's
/// and each bucket's entries into one write. Tests use tiny runs, so
/// re-indexing crosses runs.
const INDEX_RUN: usize = if cfg!(test) { 7 } else { 4_000_000 };

/// Indexes every record after position `after`, given the start-up scan of
/// the segments (its end and the records' locations). Used at start-up and
/// by `rebuild_index`.
///
/// Records are indexed in runs of [`INDEX_RUN`], each written to sled in key
/// order, one merge per stream and per bucket ([`index::Entries`]): sled
/// 0.34 loading keys in log order (random ids, streams interleaved) grew to
/// gigabytes of memory and of index files per million records. The last
/// indexed position is recorded after each run, so an interrupted catch-up
/// resumes where it stopped.
fn index_from(
    index: &sled::Db,
    segments_dir: &Path,
    after: u64,
    (end, locations): &(ScanEnd, Locations),
) -> Result<(), OpenError> {
    let written = |e: sled::Error| io("writing the index", e);
    if end.head > after {
        tracing::info!(
            from = after + 1,
            to = end.head,
            "indexing records missing from the index"
        );
        let mut run = index::Entries::default();
        let mut segment: Option<(u32, Option<memmap2::Mmap>)> = None;
        for position in after + 1..=end.head {
            let (number, offset) = locations
                .get(position)
                .expect("the scan located every record up to its end");
            if segment.as_ref().map(|(n, _)| *n) != Some(number) {
                let path = segments_dir.join(segment_name(number));
                let map = map_segment(&path)
                    .map_err(|e| io(&format!("reading {}", path.display()), e))?;
                segment = Some((number, map));
            }
            let bytes = segment
                .as_ref()
                .and_then(|(_, map)| map.as_deref())
                .unwrap_or_default();
            let decoded = record::decode(bytes.get(offset as usize..).unwrap_or_default())
                .map_err(|d| {
                    io(
                        "indexing",
                        format!("segment {number} offset {offset} changed while opening: {d:?}"),
                    )
                })?;
            let r = decoded.record;
            run.add(&r.stream_id, r.version, &r.event_id, r.position);
            if run.len() >= INDEX_RUN {
                run.write(index).map_err(written)?;
            }
        }
        run.write(index).map_err(written)?;
    }
    Ok(())
}

/// Takes the data directory's lock (`LOCK`, held while the returned file is
/// open): one process at a time may write a log or rebuild its index.
fn lock_data_dir(dir: &Path) -> Result<File, OpenError> {
    let path = dir.join("LOCK");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io(&format!("opening {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::InUse {
            dir: dir.display().to_string(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(io(&format!("locking {}", path.display()), e)),
    }
}

/// An event-id filter for a log of `segment_bytes`: room for twice the
/// records such a log holds (at 200 bytes a record; demo records average
/// about 260), and never fewer than a million.
fn id_filter(segment_bytes: u64) -> fastbloom::AtomicBloomFilter {
    let expected = (segment_bytes / 200 * 2).max(1_000_000) as usize;
    fastbloom::AtomicBloomFilter::with_false_pos(ID_FILTER_FALSE_POSITIVES).expected_items(expected)
}

/// Opens (or creates) the sled index at `path`.
fn open_index(path: &Path) -> sled::Result<sled::Db> {
    index::open(path, INDEX_CACHE_BYTES)
}

/// Deletes the index and creates an empty one in its place: far quicker
/// than emptying it in place (sled 0.34's `clear` took 16 minutes over a
/// 20M-item index, and left its page table as large).
fn recreate_index(index: sled::Db, dir: &Path) -> Result<sled::Db, OpenError> {
    drop(index);
    fs::remove_dir_all(dir).map_err(|e| io("removing the index", e))?;
    open_index_patiently(dir).map_err(|e| io("creating the index", e))
}

/// Closes `index` and opens it again, which makes sled 0.34 checkpoint: it
/// writes its page table only when it opens, and otherwise replays at its
/// next open everything written since the last (decision 63). Dropping the
/// last handle stops sled's threads and frees its lock, but its flusher
/// thread may hold the lock a moment longer (more so on a busy machine), so
/// the open is tried for up to 5 s.
fn reopen(index: sled::Db, dir: &Path) -> sled::Result<sled::Db> {
    index.flush()?;
    drop(index);
    open_index_patiently(dir)
}

/// [`open_index`], tried again every 100 ms for up to 5 s while sled's
/// lock is held: it may outlive the last handle by a moment, and the data
/// directory's own lock (taken first) rules out another process.
fn open_index_patiently(dir: &Path) -> sled::Result<sled::Db> {
    let mut attempts = 1;
    loop {
        match open_index(dir) {
            Err(e) if lock_held(&e) && attempts < 50 => {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            opened => return opened,
        }
    }
}

/// Whether sled refused to open because its lock file is held. sled 0.34
/// reports that as an `Other` I/O error naming the lock (config.rs), with
/// the OS's "would block" only inside the message.
fn lock_held(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(e) => {
            e.kind() == std::io::ErrorKind::WouldBlock
                || e.to_string().starts_with("could not acquire lock")
        }
        _ => false,
    }
}

/// Deletes the sled index of the log in `dir` and rebuilds it from the
/// segments (`openptl rebuild-index`). The log must not be open.
pub fn rebuild_index(dir: &Path) -> Result<u64, OpenError> {
    let _lock = lock_data_dir(dir)?;
    let index_dir = dir.join("index");
    if index_dir.exists() {
        fs::remove_dir_all(&index_dir).map_err(|e| io("removing the index", e))?;
    }
    let index = open_index(&index_dir).map_err(|e| io("creating the index", e))?;
    let scanned = scan_for_open(&dir.join("segments"))?;
    index_from(&index, &dir.join("segments"), 0, &scanned)?;
    // Checkpoint here rather than replay the whole rebuild at the next start.
    drop(reopen(index, &index_dir).map_err(|e| io("reopening the index", e))?);
    Ok(scanned.0.head)
}

/// What `verify` found.
#[derive(Debug, Default)]
pub struct VerifyReport {
    pub records: u64,
    pub segments: usize,
    pub streams: usize,
    pub problems: Vec<String>,
    /// Whether a damage mark (left by a background check) was removed
    /// because the whole log now checks out.
    pub damage_mark_cleared: bool,
}

/// Re-reads every segment (CRCs, positions, hash chain), checks stream
/// versions are contiguous and that the index agrees. Changes nothing but
/// the damage mark of an earlier background check, which it removes when
/// the whole log checks out.
pub fn verify(dir: &Path) -> Result<VerifyReport, OpenError> {
    let segments_dir = dir.join("segments");
    let mut report = VerifyReport {
        segments: list_segments(&segments_dir)?.len(),
        ..Default::default()
    };
    // A backup holds no index (the first start builds it): nothing to
    // compare, and none is created.
    let index = if dir.join("index").exists() {
        Some(
            open_index_patiently(&dir.join("index"))
                .map_err(|e| io("opening the index (is the service running?)", e))?,
        )
    } else {
        None
    };
    let read = |e: sled::Error| io("reading the index", e);
    let indexed = match &index {
        None => 0,
        Some(index) if index::is_current(index).map_err(read)? => {
            index::indexed(index).map_err(read)?
        }
        Some(index) if let Some(layout) = index::newer(index).map_err(read)? => {
            report.problems.push(index::newer_message(layout));
            0
        }
        Some(_) => {
            report.problems.push(
                "the index is of an earlier layout (the next start rebuilds it, or run `openptl rebuild-index`)".into(),
            );
            0
        }
    };
    let mut versions: HashMap<String, u64> = HashMap::new();
    let mut problems = Vec::new();
    let end = scan(&segments_dir, false, |found| {
        let r = found.record;
        let expected = versions.get(&r.stream_id).copied().unwrap_or(0) + 1;
        if r.version != expected {
            problems.push(format!(
                "position {}: stream {} version {} (expected {expected})",
                r.position, r.stream_id, r.version
            ));
        }
        versions.insert(r.stream_id.clone(), r.version);
        if let Some(index) = index.as_ref().filter(|_| r.position <= indexed) {
            let by_event = index::event_position(index, &r.event_id).ok().flatten();
            let by_stream = index::stream_positions(index, &r.stream_id)
                .ok()
                .and_then(|p| {
                    p.get(usize::try_from(r.version).ok()?.checked_sub(1)?)
                        .copied()
                });
            if by_event != Some(r.position) || by_stream != Some(r.position) {
                problems.push(format!("position {}: the index disagrees with the segments (run `openptl rebuild-index`)", r.position));
            }
        }
    })?;
    if indexed > end.head {
        problems.push(format!(
            "the index claims {indexed} records but the segments hold {}",
            end.head
        ));
    }
    report.records = end.head;
    report.streams = versions.len();
    report.problems.extend(problems);
    let mark = dir.join(DAMAGED);
    if report.problems.is_empty() && mark.exists() {
        fs::remove_file(&mark).map_err(|e| io(&format!("removing {}", mark.display()), e))?;
        report.damage_mark_cleared = true;
    }
    Ok(report)
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
        fs::create_dir_all(&segments_dir).map_err(|e| io("creating the data directory", e))?;
        let lock = lock_data_dir(dir)?;
        if let Some(damage) = recorded_damage(dir) {
            return Err(damage);
        }
        let index_dir = dir.join("index");
        let started = std::time::Instant::now();
        let mut index = match open_index_patiently(&index_dir) {
            Ok(db) => db,
            // Never taken for damage: the index may be in use.
            Err(e) if lock_held(&e) => {
                return Err(io(
                    "opening the index",
                    format!("{e}: is another process using it?"),
                ));
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
        let scanned = scan_for_open(&segments_dir)?;
        let read = |e: sled::Error| io("reading the index", e);
        if let Some(layout) = index::newer(&index).map_err(read)? {
            return Err(OpenError::Newer(index::newer_message(layout)));
        }
        let current = index::is_current(&index).map_err(read)?;
        let indexed = index::indexed(&index).map_err(read)?;
        let stored_bytes: u64 = list_segments(&segments_dir)?
            .iter()
            .filter_map(|(_, path)| fs::metadata(path).ok())
            .map(|m| m.len())
            .sum();
        let ids = id_filter(stored_bytes);
        let caught_up = if !current || indexed > scanned.0.head {
            if current {
                tracing::warn!(
                    indexed,
                    head = scanned.0.head,
                    "the index is ahead of the segments; rebuilding it"
                );
            } else {
                tracing::warn!(
                    layout = index::LAYOUT,
                    "the index is of an earlier layout; rebuilding it from the segments (once)"
                );
            }
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
                .unwrap_or_else(|e| e.into_inner());
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
        let slot = self.index.read().unwrap_or_else(|e| e.into_inner());
        let index = slot.as_ref().ok_or_else(|| {
            LogError::Storage("the index could not be reopened; restart the service".into())
        })?;
        f(index).map_err(Self::storage)
    }

    fn file(&self, segment: u32) -> std::io::Result<Arc<File>> {
        let mut files = self.files.lock().expect("file cache lock");
        if let Some(f) = files.get(&segment) {
            return Ok(f.clone());
        }
        let file = Arc::new(File::open(self.segments_dir.join(segment_name(segment)))?);
        files.insert(segment, file.clone());
        Ok(file)
    }

    fn storage(e: impl std::fmt::Display) -> LogError {
        LogError::Storage(e.to_string())
    }

    /// Where the record at `position` is.
    fn location(&self, position: u64) -> Result<(u32, u64), LogError> {
        shared_location(
            &self.locations.read().unwrap_or_else(|e| e.into_inner()),
            position,
        )
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
            |d: Damage| LogError::Storage(format!("segment {segment} offset {offset}: {d:?}"));
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
            match record::decode(&buffer[at..]) {
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
                            return Err(LogError::Storage(format!(
                                "segment {segment} ends inside a record"
                            )));
                        }
                        segment += 1;
                        offset = 0;
                    }
                }
                Err(d) => {
                    return Err(LogError::Storage(format!(
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
        *self.chain_head.lock().unwrap_or_else(|e| e.into_inner()) = crate::ChainHead {
            position: head,
            hash,
        };
        self.head.send_replace(head);
    }

    /// Damage the background check found.
    fn damage(&self) -> Option<String> {
        self.damage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn unindexed(&self) -> std::sync::MutexGuard<'_, Unindexed> {
        self.unindexed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the event with `id` is: the entries waiting for sled first, then
    /// sled (the indexer removes an entry only once sled has it).
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

/// The single writer: owns the open segment, the hash chain and the head.
struct Writer {
    shared: Arc<Shared>,
    file: File,
    segment: u32,
    segment_len: u64,
    head: u64,
    last_hash: Hash,
    last_time: Option<DateTime<Utc>>,
    /// Stream versions of the streams written lately (filled lazily from
    /// the index, cleared when it grows past `CACHED_STREAM_VERSIONS`).
    versions: HashMap<String, u64>,
    /// Set when something that only a restart mends went wrong (a failed
    /// write that could not be taken back, a refused index write, damage):
    /// nothing more is accepted.
    failed: Option<String>,
    /// Set while writes fail (a full disk, say) and were taken back: each
    /// group still tries, and a probe every [`PROBE_EVERY`] clears it once
    /// the disk takes writes again.
    failing: Option<String>,
    segment_bytes: u64,
    /// Where each written group's index entries go.
    indexer: mpsc::SyncSender<IndexJob>,
}

impl Writer {
    fn run(&mut self, jobs: mpsc::Receiver<Job>) {
        loop {
            let first = if self.failing.is_some() {
                match jobs.recv_timeout(PROBE_EVERY) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.probe();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match jobs.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                }
            };
            let first = match first {
                Job::Append(request) => request,
                Job::Verbatim(job) => {
                    self.store_verbatim(job);
                    continue;
                }
            };
            let mut bytes = request_bytes(&first);
            let mut group = vec![first];
            let mut after = None;
            while group.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                match jobs.try_recv() {
                    Ok(Job::Append(r)) => {
                        bytes += request_bytes(&r);
                        group.push(r);
                    }
                    Ok(Job::Verbatim(job)) => {
                        after = Some(job);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(group);
            if let Some(job) = after {
                self.store_verbatim(job);
            }
        }
    }

    fn store_verbatim(&mut self, job: Verbatim) {
        let result = self.write_verbatim(job.records);
        let _ = job.reply.send(result);
    }

    /// Stores records as another log stored them, extending the hash chain.
    fn write_verbatim(&mut self, records: Vec<StoredRecord>) -> Result<(), LogError> {
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        let Some(last) = records.last() else {
            return Ok(());
        };
        let (head, last_time) = (last.position, last.recorded_at);
        let mut versions: HashMap<String, u64> = HashMap::new();
        for r in &records {
            if !versions.contains_key(&r.stream_id) {
                let v = self.version_of(&r.stream_id)?;
                versions.insert(r.stream_id.clone(), v);
            }
        }
        let shared = self.shared.clone();
        check_verbatim(
            &records,
            self.head,
            |s| versions.get(s).copied().unwrap_or(0),
            |id| shared.position_of_event(id).ok().flatten().is_some(),
        )?;
        let mut buffer = Vec::new();
        let mut hash = self.last_hash;
        let mut new = Vec::with_capacity(records.len());
        for r in records {
            let offset = buffer.len() as u64;
            hash = record::encode(&r, &hash, &mut buffer);
            versions.insert(r.stream_id.clone(), r.version);
            new.push((r, offset));
        }
        self.write_durably(&buffer, &new)?;
        self.head = head;
        self.last_hash = hash;
        self.last_time = Some(self.last_time.map_or(last_time, |t| t.max(last_time)));
        self.versions.extend(versions);
        self.shared.publish(head, hash);
        Ok(())
    }

    fn version_of(&mut self, stream: &str) -> Result<u64, LogError> {
        if let Some(v) = self.versions.get(stream) {
            return Ok(*v);
        }
        let v = self.shared.stream_version(stream)?;
        self.versions.insert(stream.to_string(), v);
        Ok(v)
    }

    /// Why no write is accepted any more (a failed segment write, or sled
    /// refusing the indexer), if that is so: the one check of both write paths.
    fn refusal(&mut self) -> Option<LogError> {
        if self.failed.is_none() {
            if let Some(reason) = self
                .shared
                .index_failed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
            {
                self.failed = Some(format!("the index could not be written: {reason}"));
            } else if let Some(damage) = self.shared.damage() {
                self.failed = Some(format!("the log is damaged: {damage}"));
            }
        }
        self.failed
            .as_ref()
            .map(|reason| LogError::Storage(format!("the log stopped accepting writes: {reason}")))
    }

    fn commit(&mut self, group: Vec<Request>) {
        if let Some(refused) = self.refusal() {
            for request in group {
                let _ = request.reply.send(Err(refused.clone()));
            }
            return;
        }
        // Stored with microsecond precision: answer with exactly what is stored.
        let now = DateTime::<Utc>::from_timestamp_micros(Utc::now().timestamp_micros())
            .expect("now is in range");
        let recorded_at = self.last_time.map_or(now, |t| now.max(t));
        let mut buffer: Vec<u8> = Vec::new();
        let mut hash = self.last_hash;
        let mut head = self.head;
        let mut group_versions: HashMap<String, u64> = HashMap::new();
        // Event id → index in `new_records`, for look-ups within the group.
        let mut group_events: HashMap<Uuid, usize> = HashMap::new();
        // Each record and its offset in `buffer`.
        let mut new_records: Vec<(StoredRecord, u64)> = Vec::new();
        // Each request's reply channel and its outcome.
        type Reply = Result<Vec<Appended>, LogError>;
        let mut results: Vec<(oneshot::Sender<Reply>, Reply)> = Vec::with_capacity(group.len());
        for request in group {
            // Look-ups see the committed log plus earlier requests of this group.
            let mut lookup_error = None;
            let streams: Vec<String> = request.batch.iter().map(|r| r.stream_id.clone()).collect();
            for stream in streams {
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    group_versions.entry(stream)
                {
                    match self.version_of(slot.key()) {
                        Ok(v) => {
                            slot.insert(v);
                        }
                        Err(e) => lookup_error = Some(e),
                    }
                }
            }
            let shared = self.shared.clone();
            let plan = match lookup_error {
                Some(e) => Err(e),
                None => plan_batch(
                    &request.batch,
                    |stream| group_versions.get(stream).copied().unwrap_or(0),
                    |id| {
                        let in_group = group_events.get(id).map(|i| new_records[*i].0.clone());
                        in_group.or_else(|| {
                            let position = shared.position_of_event(id).ok().flatten()?;
                            shared.read_position(position).ok()
                        })
                    },
                ),
            };
            let plan = match plan {
                Ok(plan) => plan,
                Err(e) => {
                    results.push((request.reply, Err(e)));
                    continue;
                }
            };
            let out = apply_plan(request.batch, plan, &mut head, recorded_at, |stored| {
                let offset = buffer.len() as u64;
                hash = record::encode(&stored, &hash, &mut buffer);
                group_versions.insert(stored.stream_id.clone(), stored.version);
                group_events.insert(stored.event_id, new_records.len());
                new_records.push((stored, offset));
            });
            results.push((request.reply, Ok(out)));
        }

        if !buffer.is_empty() {
            if let Err(e) = self.write_durably(&buffer, &new_records) {
                for (reply, _) in results {
                    let _ = reply.send(Err(e.clone()));
                }
                return;
            }
            self.head = head;
            self.last_hash = hash;
            self.last_time = Some(recorded_at);
            // A cache of the streams written lately, not of every stream.
            if self.versions.len() > CACHED_STREAM_VERSIONS {
                self.versions.clear();
            }
            self.versions.extend(group_versions);
            self.shared.publish(head, hash);
        }
        for (reply, result) in results {
            let _ = reply.send(result);
        }
    }

    /// Writes the group, fdatasyncs, then indexes it. Only after this returns
    /// Ok may any request of the group be answered. A write that fails is
    /// taken back before the error is returned ([`Writer::take_back`]): a
    /// group that was not acknowledged leaves nothing behind.
    fn write_durably(
        &mut self,
        buffer: &[u8],
        records: &[(StoredRecord, u64)],
    ) -> Result<(), LogError> {
        if self.segment_len > 0 && self.segment_len + buffer.len() as u64 > self.segment_bytes {
            self.roll_over().map_err(|e| self.failing(e))?;
        }
        if self.segment_len + buffer.len() as u64 > u64::from(u32::MAX) {
            // Unreachable with bounded groups (MAX_GROUP_BYTES); refused
            // before anything is written rather than unindexable.
            return Err(LogError::Storage(format!(
                "a write of {} bytes would take segment {} past 4 GiB",
                buffer.len(),
                self.segment
            )));
        }
        let written = self
            .file
            .write_all(buffer)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            let problem = format!("writing segment {}: {e}", self.segment);
            return Err(self.take_back(problem));
        }
        if self.failing.take().is_some() {
            tracing::info!("the event log takes appends again");
            self.set_not_writing(None);
        }
        // Index entries wait in memory (look-ups see them) until the
        // indexer has written them to sled.
        let mut entries = Vec::with_capacity(records.len());
        {
            let mut unindexed = self.shared.unindexed();
            for (record, _) in records {
                self.shared.ids.insert(&record.event_id);
                unindexed.events.insert(record.event_id, record.position);
                unindexed
                    .streams
                    .entry(record.stream_id.clone())
                    .or_default()
                    .push((record.version, record.position));
                entries.push((
                    record.stream_id.clone(),
                    record.version,
                    record.event_id,
                    record.position,
                ));
            }
        }
        self.indexer.send(IndexJob { entries }).map_err(|_| {
            // The group is on disk, but will not be found by id: stop, and
            // let the callers retry after a restart (ids are idempotent).
            self.failed = Some("the indexer has stopped".to_string());
            LogError::OutcomeUnknown("the indexer has stopped".to_string())
        })?;
        {
            let mut locations = self
                .shared
                .locations
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for (_, offset) in records {
                locations.push(self.segment, self.segment_len + offset);
            }
        }
        self.segment_len += buffer.len() as u64;
        Ok(())
    }
}

impl Writer {
    /// Starts the next segment. Nothing changes unless the new file exists
    /// and the directory entry is synced: records acknowledged in a file
    /// whose entry a crash could lose would be lost with it.
    fn roll_over(&mut self) -> std::io::Result<()> {
        let next = self.segment + 1;
        let path = self.shared.segments_dir.join(segment_name(next));
        // Not `create_new`: an empty file left by an earlier attempt whose
        // directory sync failed is taken as it is.
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if file.metadata()?.len() != 0 {
            return Err(std::io::Error::other(format!(
                "{} exists and is not empty",
                path.display()
            )));
        }
        sync_dir(&self.shared.segments_dir)?;
        self.file = file;
        self.segment = next;
        self.segment_len = 0;
        Ok(())
    }

    /// After a failed write or sync: cuts the segment back to the end of
    /// the last acknowledged group and syncs the cut, so that nothing of
    /// the refused group is there after a restart (complete records of it
    /// would pass their CRCs). What was acknowledged was synced before, so
    /// the cut keeps all of it. The writer then goes on trying each group
    /// and probing the disk (`failing`, `/readyz` fails meanwhile).
    ///
    /// If even the cut fails, whether the group is on disk is unknown: the
    /// writer stops for good ([`Writer::failed`]), and the callers are told
    /// that retrying with the same event ids is safe (they are recorded once).
    fn take_back(&mut self, problem: String) -> LogError {
        let end = self.segment_len;
        match self.file.set_len(end).and_then(|()| self.file.sync_all()) {
            Ok(()) => {
                tracing::error!(
                    segment = self.segment,
                    problem = %problem,
                    "writing to the event log failed; nothing of the refused batch was kept. Free space on the data directory's disk (or mend it): appends resume by themselves"
                );
                self.failing(std::io::Error::other(problem))
            }
            Err(e) => {
                let reason = format!("{problem}; taking it back failed too: {e}");
                tracing::error!(
                    segment = self.segment,
                    reason = %reason,
                    "writing to the event log failed and could not be taken back; appends are refused until restart. Free space on the data directory's disk, then restart the service"
                );
                self.failed = Some(reason.clone());
                self.set_not_writing(Some(format!("the log stopped accepting writes: {reason}")));
                LogError::OutcomeUnknown(reason)
            }
        }
    }

    /// Notes that writes fail for now, and the error for the callers.
    fn failing(&mut self, e: std::io::Error) -> LogError {
        let problem = e.to_string();
        self.set_not_writing(Some(format!("appends fail: {problem}")));
        self.failing = Some(problem.clone());
        LogError::Storage(format!("{problem} (nothing of this batch was kept)"))
    }

    fn set_not_writing(&self, why: Option<String>) {
        *self
            .shared
            .not_writing
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// While writes fail: whether the data directory's disk takes a write
    /// of [`PROBE_BYTES`] again (written, synced and removed beside the
    /// segments), so that `/readyz` recovers without waiting for an append
    /// (a balancer sends none to a node that is not ready).
    fn probe(&mut self) {
        if self.failed.is_some() {
            return;
        }
        // Beside the segments: their folder may be a mount of its own.
        let path = self.shared.segments_dir.join("write-probe");
        let probed = File::create(&path).and_then(|mut f| {
            f.write_all(&vec![0u8; PROBE_BYTES])?;
            f.sync_all()
        });
        let _ = fs::remove_file(&path);
        if probed.is_ok() {
            tracing::info!("the data directory's disk takes writes again; appends resume");
            self.failing = None;
            self.set_not_writing(None);
        }
    }
}

/// The name of the mark a broken hash chain leaves in the data directory:
/// while it is there the log refuses to open (decision 67).
const DAMAGED: &str = "DAMAGED";

/// The background half of the start-up check (decision 67), at a low
/// priority: reads every segment stored at open once, checks the hash chain
/// inside each sealed segment (the start-up scan checked every CRC, every
/// link between segments and the chain of the last one), and puts every
/// event id into the id filter. `verified` advances segment by segment.
///
/// A broken chain is what an edit of history with its CRC made good looks
/// like. As EventStoreDB does with a chunk whose hash fails its background
/// check, the log then stops: it refuses appends, reports the damage
/// ([`EventLog::damage`]; the service stops on it), and leaves a mark in
/// the data directory so that every later start refuses until `openptl
/// verify` finds the log whole again.
fn check_in_background(shared: &Shared, head: u64, last_segment: u32) {
    // SAFETY: as in `run_indexer`.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, ID_FILTER_NICE);
    }
    {
        let (done, notified) = &shared.start_up_done;
        let done = done.lock().unwrap_or_else(|e| e.into_inner());
        drop(
            notified
                .wait_timeout_while(done, CHECK_AT_THE_LATEST, |done| {
                    !*done && !shared.closing.load(std::sync::atomic::Ordering::Acquire)
                })
                .unwrap_or_else(|e| e.into_inner()),
        );
    }
    let started = std::time::Instant::now();
    let Ok(segments) = list_segments(&shared.segments_dir) else {
        return;
    };
    // The next position expected: every record up to `head` must be seen,
    // in order, or the filter would miss ids (and a duplicate id pass).
    let mut expected = 1u64;
    let mut last_path = None;
    for (number, path) in segments {
        if number > last_segment || expected > head {
            break; // segments begun after the open hold nothing to check
        }
        if shared.closing.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        // The same check as at open, with the chain (the last segment's was
        // checked at open), stopping at the head the open saw.
        let chain = number < last_segment;
        let checked = check_segment(number, &path, chain, head, |record| {
            shared.ids.insert(&record.event_id);
            // A record is vouched for by the next one's link to it.
            shared
                .verified
                .fetch_max(record.position - 1, std::sync::atomic::Ordering::Release);
        });
        let Ok(c) = checked else {
            tracing::warn!(file = %path.display(), "could not read a segment for the background check; ids are looked up in the index");
            return;
        };
        // Everything here passed the open's checks: damage now means the
        // file changed since.
        if let Some((offset, problem, _)) = &c.damage {
            found_damage(shared, &c.path, *offset, problem);
            return;
        }
        if let Some((first, _)) = c.first {
            if first != expected {
                let problem = format!("position {first} follows {}", expected - 1);
                found_damage(shared, &c.path, 0, &problem);
                return;
            }
            expected = c.last_position + 1;
        }
        // The segment's last record: linked to the next segment at open.
        shared
            .verified
            .fetch_max(expected - 1, std::sync::atomic::Ordering::Release);
        last_path = Some(path);
    }
    if expected <= head {
        let path = last_path.unwrap_or_else(|| shared.segments_dir.clone());
        let problem = format!("records {expected} to {head} are missing");
        found_damage(shared, &path, 0, &problem);
        return;
    }
    shared
        .ids_ready
        .store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(
        records = head,
        ms = started.elapsed().as_millis() as u64,
        "hash chain checked and event-id filter ready"
    );
}

/// Records damage the background check found: appends stop, and the mark
/// keeps later starts from opening the log.
fn found_damage(shared: &Shared, file: &Path, offset: u64, problem: &str) {
    let message = format!("{} at offset {offset}: {problem}", file.display());
    tracing::error!(file = %file.display(), offset, problem, "the log is damaged: appends are refused and the service stops; restore the segments from a backup, then run `openptl verify`");
    let mark = shared.data_dir.join(DAMAGED);
    let written = File::create(&mark)
        .and_then(|mut f| {
            f.write_all(format!("{}\n{offset}\n{problem}\n", file.display()).as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| sync_dir(&shared.data_dir));
    if let Err(e) = written {
        tracing::error!(error = %e, mark = %mark.display(), "could not leave the damage mark");
    }
    *shared.damage.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
}

/// The damage an earlier background check recorded in `dir`, if any.
fn recorded_damage(dir: &Path) -> Option<OpenError> {
    let text = fs::read_to_string(dir.join(DAMAGED)).ok()?;
    let mut lines = text.lines();
    let file = lines.next().unwrap_or_default().to_string();
    let offset = lines.next().and_then(|o| o.parse().ok()).unwrap_or(0);
    let problem = lines.next().unwrap_or("damage recorded").to_string();
    Some(OpenError::Corrupt {
        file,
        offset,
        problem: format!("{problem} (found by the check after an earlier start; {} stays until `openptl verify` finds the log whole)", dir.join(DAMAGED).display()),
    })
}

/// The indexer: writes the writer's index entries to sled, many groups at a
/// time, then drops them from the entries waiting in memory.
fn run_indexer(shared: &Shared, jobs: mpsc::Receiver<IndexJob>) {
    // Indexing is catch-up work: requests come first. A lower priority keeps
    // sled's bursts from delaying answers; when the indexer falls behind,
    // the writer's bounded queue slows appends down to its pace.
    // SAFETY: setpriority on the calling thread (tid 0 = this thread on
    // Linux) only changes its scheduling weight.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, INDEXER_NICE);
    }
    let mut since_reopened = 0u64;
    while let Ok(first) = jobs.recv() {
        let mut entries = first.entries;
        while entries.len() < INDEX_BATCH {
            match jobs.try_recv() {
                Ok(more) => entries.extend(more.entries),
                Err(_) => break,
            }
        }
        if shared
            .index_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
        {
            // Entries stay waiting in memory; appends have stopped.
            continue;
        }
        #[cfg(test)]
        let _paused = shared.index_paused.lock();
        // One merge per stream and per bucket, the mark last.
        let mut gathered = index::Entries::default();
        for (stream, version, event_id, position) in &entries {
            gathered.add(stream, *version, event_id, *position);
        }
        let written = shared.with_index(|index| gathered.write(index));
        if let Err(e) = written {
            tracing::error!(error = %e, "writing the index failed; appends are refused until restart");
            *shared
                .index_failed
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(e.to_string());
            continue;
        }
        let mut unindexed = shared.unindexed();
        for (stream, version, event_id, _) in &entries {
            unindexed.events.remove(event_id);
            if let Some(waiting) = unindexed.streams.get_mut(stream) {
                waiting.retain(|(v, _)| v > version);
                if waiting.is_empty() {
                    unindexed.streams.remove(stream);
                }
            }
        }
        drop(unindexed);
        since_reopened += entries.len() as u64;
        if since_reopened >= REOPEN_INDEX_AFTER {
            since_reopened = 0;
            reopen_index(shared);
        }
    }
}

/// Closes and reopens the sled index, so that it checkpoints.
///
/// sled 0.34 writes its page table to disk only when it opens, and on every
/// open replays everything it wrote since the last one: a log that took 10M
/// records in one run spent 12.9 s of its next start in sled's open (5 GB
/// replayed) against 1.6 s after a short run. Reopening every
/// [`REOPEN_INDEX_AFTER`] records bounds that replay, whenever the process
/// stops. Index look-ups wait meanwhile (the writer needs one only for a new
/// stream or an event-id filter hit); entries stay waiting in memory, so
/// nothing is missed. If sled cannot be reopened, appends are refused until
/// a restart, as for any failed index write.
fn reopen_index(shared: &Shared) {
    let started = std::time::Instant::now();
    let mut slot = shared.index.write().unwrap_or_else(|e| e.into_inner());
    let reopened = match slot.take() {
        Some(old) => reopen(old, &shared.index_dir),
        None => open_index_patiently(&shared.index_dir),
    };
    let failure = match reopened {
        Ok(db) => {
            *slot = Some(db);
            shared
                .index_reopenings
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "index reopened (sled checkpoints when it opens)"
            );
            return;
        }
        Err(e) => e.to_string(),
    };
    tracing::error!(error = %failure, "reopening the index failed; appends are refused until restart");
    *shared
        .index_failed
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(format!("reopening the index: {failure}"));
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
            .map_err(|_| LogError::Storage("the log writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| LogError::Storage("the log writer has stopped".into()))?
    }

    async fn append_verbatim(&self, records: Vec<StoredRecord>) -> Result<(), LogError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .as_ref()
            .expect("the writer runs while the log is open")
            .send(Job::Verbatim(Verbatim { records, reply }))
            .map_err(|_| LogError::Storage("the log writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| LogError::Storage("the log writer has stopped".into()))?
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
        let mut positions = self
            .shared
            .with_index(|index| index::stream_positions(index, stream_id))?;
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
        match self.shared.position_of_event(&event_id)? {
            Some(p) if p <= self.head() => self.shared.read_position(p).map(Some),
            _ => Ok(None),
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
                .map_err(|e| LogError::Storage(e.to_string())),
        )
    }

    async fn chain_head(&self) -> Result<Option<crate::ChainHead>, LogError> {
        Ok(Some(
            *self
                .shared
                .chain_head
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        ))
    }

    fn unavailable(&self) -> Option<String> {
        let failed = self
            .shared
            .index_failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map(|reason| format!("the index could not be written: {reason}"));
        failed.or_else(|| {
            self.shared
                .not_writing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        })
    }

    fn start_up_done(&self) {
        let (done, notified) = &self.shared.start_up_done;
        *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
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
