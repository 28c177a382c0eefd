//! The states the projection replaced as records came in, kept in files
//! beside the log for views as known at a past moment (decision 162).
//!
//! A pathway's state as known at a moment is exactly the state the
//! projection held before the first of its records recorded since was
//! folded in. When a refresh replaces a state because records came, the
//! old state's packed bytes are written here under the position of the
//! first of those records (the record its version does not count), with
//! the date it was evaluated on. A view as known at a moment then moves
//! that state, as it moves today's, instead of reading the pathway's
//! history back from the log.
//!
//! What is kept is derived data, like the projection's snapshot: an entry
//! is a fact about the log ("the state from the records before position
//! P"), so a missing one only means the history is read back, and a file
//! written by another binary or rules configuration is removed unread.
//! After a fold from the log, or when the files do not account for every
//! record up to where the projection starts, the entries of the last
//! [`KEEP_DAYS`](super::record_days::KEEP_DAYS) days are written afresh from the log in the background
//! ([`Projection::prepare_replaced`]). Files hold the entries of
//! [`BUCKET`] positions each and go once all of theirs are older than the
//! record dates past views keep.
//!
//! Layout of a file: a header (magic, then the length and bytes of the
//! stamp: binary and build ([`crate::snapshot::BINARY`]), snapshot format,
//! rules fingerprint), then
//! entries, each: position (u64), the day its state was evaluated on (i32
//! days from the common era), the packed bytes' length (u32), its CWT
//! record months ([`CwtMonths`]: the first month's number, i32, `i32::MIN`
//! when not known, and a byte of bits), the bytes,
//! and a CRC-32C of all of those (u32), little-endian. Entries of one file
//! are in no particular order. The coverage file `covered` holds, in
//! text, the first position from which every record's replaced state is
//! kept, the position up to which it is (a snapshot's), the event id
//! stored there, and the CRC of the stamp the files were written under.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{Datelike, NaiveDate};
use openptl_rules::{Period, RulesConfig};

use crate::AppError;

/// Positions whose entries share a file (about a day's records at the
/// benchmark's 1.4M pathways).
pub(crate) const BUCKET: u64 = 1 << 16;

const MAGIC: &[u8; 8] = b"OPTLRPL2";

/// The most entries of the files [`ReplacedStates::find`] reads per state
/// it is asked for: reading a history back and evaluating it costs about
/// what reading 40 entries does (at 1.4M pathways, 7 days of files, some
/// 770,000 entries, were read in 106 ms; 2,483 histories read back in about
/// 40 ms), so with fewer wanted the histories are read back instead (32:
/// on the side of reading the files, which a view as known at a moment
/// relied on before).
const ENTRIES_PER_WANTED: u64 = 32;

/// One replaced state: the position of the record that replaced it, the
/// day it was evaluated on, the months it has CWT records in when known,
/// and its packed bytes.
pub(crate) type Replaced = (u64, NaiveDate, Option<CwtMonths>, Box<[u8]>);

/// Which of eight months from `first` a kept state has CWT records in
/// ([`openptl_rules::cwt::record_months`]), bit `i` for the `i`-th month
/// on: what a view of one month's records needs to pass over a kept state
/// without unpacking it (decision 173). Moving a state to a date does not
/// change its record months (decision 171), so they hold for any date the
/// state moves to as it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CwtMonths {
    first: Period,
    bits: u8,
}

impl CwtMonths {
    /// Of the `months` a state has records in, those of the eight from
    /// `first` (the others it cannot tell).
    pub(crate) fn of(first: Period, months: impl IntoIterator<Item = Period>) -> CwtMonths {
        let bits = months
            .into_iter()
            .filter_map(|month| offset(first, month))
            .filter(|i| *i < 8)
            .fold(0u8, |bits, i| bits | 1 << i);
        CwtMonths { first, bits }
    }

    /// Whether the state has records in `month`, when it can tell (one of
    /// its eight months).
    pub(crate) fn has(self, month: Period) -> Option<bool> {
        let i = offset(self.first, month)?;
        (i < 8).then(|| self.bits & 1 << i != 0)
    }
}

/// How many months `month` is after `first` (`None` before it).
fn offset(first: Period, month: Period) -> Option<u32> {
    u32::try_from(month.number() - first.number()).ok()
}

/// The kept states and where their files are.
pub(crate) struct ReplacedStates {
    dir: PathBuf,
    stamp: Vec<u8>,
    files: Mutex<Files>,
    /// Set once the files found at start were checked: entries are
    /// written and read only from then on.
    ready: AtomicBool,
    /// Set once every record from [`Files::covered_from`] on has its entry
    /// (after a backfill, or when the files found at start did).
    complete: AtomicBool,
    /// How many states views took from here instead of reading them back.
    used: AtomicU64,
}

#[derive(Default)]
struct Files {
    /// Each file's bucket, and the lowest and highest position it holds.
    ranges: BTreeMap<u64, (u64, u64)>,
    /// The first position from which every record has its entry.
    covered_from: Option<u64>,
}

fn day_number(day: NaiveDate) -> i32 {
    day.num_days_from_ce()
}

/// The bytes of an entry before its packed bytes.
const HEAD: usize = 21;

/// One entry's bytes.
fn encode(out: &mut Vec<u8>, (position, on, months, bytes): &Replaced) {
    let start = out.len();
    out.extend_from_slice(&position.to_le_bytes());
    out.extend_from_slice(&day_number(*on).to_le_bytes());
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_le_bytes());
    // (A first month past what an i32 holds is written as not known.)
    let first = months.and_then(|m| Some((i32::try_from(m.first.number()).ok()?, m.bits)));
    let (first, bits) = first.unwrap_or((i32::MIN, 0));
    out.extend_from_slice(&first.to_le_bytes());
    out.push(bits);
    out.extend_from_slice(bytes);
    let crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// The head of the entry at `at`, unchecked: its position, and where its
/// packed bytes end (its CRC follows; the next entry 4 bytes on).
fn head_at(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let head = bytes.get(at..at.checked_add(HEAD)?)?;
    let position = u64::from_le_bytes(head[..8].try_into().ok()?);
    let len = usize::try_from(u32::from_le_bytes(head[12..16].try_into().ok()?)).ok()?;
    Some((position, at.checked_add(HEAD)?.checked_add(len)?))
}

/// An entry read, and where the next begins; `None` where the bytes end
/// or do not hold a whole, intact entry.
fn decode(bytes: &[u8], at: usize) -> Option<(Entry<'_>, usize)> {
    let (position, end) = head_at(bytes, at)?;
    let day = i32::from_le_bytes(bytes[at + 8..at + 12].try_into().ok()?);
    let first = i32::from_le_bytes(bytes[at + 16..at + 20].try_into().ok()?);
    let bits = bytes[at + 20];
    let packed = bytes.get(at + HEAD..end)?;
    let crc = u32::from_le_bytes(bytes.get(end..end + 4)?.try_into().ok()?);
    if crc32c::crc32c(&bytes[at..end]) != crc {
        return None;
    }
    let on = NaiveDate::from_num_days_from_ce_opt(day)?;
    let months = (first != i32::MIN).then(|| CwtMonths {
        first: Period::from_number(first),
        bits,
    });
    Some(((position, on, months, packed), end + 4))
}

/// An entry as read: a [`Replaced`] with its bytes borrowed.
type Entry<'a> = (u64, NaiveDate, Option<CwtMonths>, &'a [u8]);

impl ReplacedStates {
    /// The store in `dir` for states packed by this binary under `config`
    /// (nothing is read until [`ReplacedStates::check`]).
    pub(crate) fn new(dir: PathBuf, config: &RulesConfig) -> ReplacedStates {
        let stamp = format!(
            "{} {} {}",
            crate::snapshot::BINARY,
            crate::snapshot::FORMAT,
            crate::snapshot::fingerprint(config)
        )
        .into_bytes();
        ReplacedStates {
            dir,
            stamp,
            files: Mutex::default(),
            ready: AtomicBool::new(false),
            complete: AtomicBool::new(false),
            used: AtomicU64::new(0),
        }
    }

    fn files(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn path_of(&self, bucket: u64) -> PathBuf {
        self.dir.join(format!("{bucket:010}.states"))
    }

    fn covered_path(&self) -> PathBuf {
        self.dir.join("covered")
    }

    /// The stamp's CRC, in hex (in the coverage file: files of another
    /// stamp are removed, so they do not cover anything).
    fn stamp_sum(&self) -> String {
        format!("{:08x}", crc32c::crc32c(&self.stamp))
    }

    fn header(&self) -> Vec<u8> {
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&(self.stamp.len() as u32).to_le_bytes());
        header.extend_from_slice(&self.stamp);
        header
    }

    /// Whether entries are written and read yet.
    pub(crate) fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether every record since the first covered has its entry.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete.load(Ordering::Acquire)
    }

    /// How many states views have taken from here.
    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// Checks the files found at start against a projection at `position`
    /// whose record there has `event_id`: removes those of another binary
    /// or rules, cuts a torn last entry, drops entries after `position`
    /// (the runner writes them again as it folds those records). Whether
    /// the files account for every record from `window_first` to
    /// `position` (else the caller writes them afresh). Entries are
    /// written and read from here on.
    pub(crate) fn check(
        &self,
        position: u64,
        event_id: Option<uuid::Uuid>,
        window_first: u64,
    ) -> Result<bool, AppError> {
        let io = |e: std::io::Error| {
            AppError::storage(format!(
                "the replaced states in {}: {e}",
                self.dir.display()
            ))
        };
        std::fs::create_dir_all(&self.dir).map_err(io)?;
        let covered = std::fs::read_to_string(self.covered_path()).ok();
        let covered = covered.as_deref().and_then(|text| {
            let mut words = text.split_whitespace();
            let from: u64 = words.next()?.parse().ok()?;
            let to: u64 = words.next()?.parse().ok()?;
            let id: uuid::Uuid = words.next()?.parse().ok()?;
            let stamp = words.next()?;
            Some((from, to, id, stamp == self.stamp_sum()))
        });
        // Accounted for: every record from the first of the window up to
        // where the projection starts, on this very log.
        let complete = covered.is_some_and(|(from, to, id, same_stamp)| {
            same_stamp && to == position && Some(id) == event_id && from <= window_first.max(1)
        });
        if !complete {
            // Whatever it said no longer holds once the files go.
            let _ = std::fs::remove_file(self.covered_path());
        }
        let header = self.header();
        let mut ranges = BTreeMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let bucket = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".states"))
                .and_then(|n| n.parse::<u64>().ok());
            let Some(bucket) = bucket else {
                // A rewrite a crash left half done.
                if path.extension().is_some_and(|e| e == "tmp") {
                    std::fs::remove_file(&path).map_err(io)?;
                }
                continue;
            };
            if !complete {
                std::fs::remove_file(&path).map_err(io)?;
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io)?;
            if !bytes.starts_with(&header) {
                std::fs::remove_file(&path).map_err(io)?;
                continue;
            }
            // Its entries up to the first that is torn, and of those the
            // ones up to `position`.
            let (mut at, mut kept, mut range) = (header.len(), Vec::new(), None::<(u64, u64)>);
            let mut beyond = false;
            while let Some(((p, ..), next)) = decode(&bytes, at) {
                if p <= position {
                    kept.push(at..next);
                    range = Some(range.map_or((p, p), |(lo, hi)| (lo.min(p), hi.max(p))));
                } else {
                    beyond = true;
                }
                at = next;
            }
            if beyond || at < bytes.len() {
                let mut fresh = header.clone();
                for r in kept {
                    fresh.extend_from_slice(&bytes[r]);
                }
                let temporary = path.with_extension("tmp");
                std::fs::write(&temporary, &fresh).map_err(io)?;
                std::fs::rename(&temporary, &path).map_err(io)?;
            }
            match range {
                Some(range) => {
                    ranges.insert(bucket, range);
                }
                None => std::fs::remove_file(&path).map_err(io)?,
            }
        }
        let mut files = self.files();
        files.ranges = ranges;
        files.covered_from = covered.filter(|_| complete).map(|(from, ..)| from);
        drop(files);
        self.complete.store(complete, Ordering::Release);
        self.ready.store(true, Ordering::Release);
        Ok(complete)
    }

    /// Keeps `states` (each file written with one call; nothing before
    /// [`ReplacedStates::check`]). Not synced: a state lost in a crash is
    /// read back instead.
    pub(crate) fn keep(&self, states: &[Replaced]) -> Result<(), AppError> {
        if states.is_empty() || !self.is_ready() {
            return Ok(());
        }
        let mut by_bucket: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut ranges: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for state in states {
            let bucket = state.0 / BUCKET;
            encode(by_bucket.entry(bucket).or_default(), state);
            let range = ranges.entry(bucket).or_insert((state.0, state.0));
            *range = (range.0.min(state.0), range.1.max(state.0));
        }
        let mut files = self.files();
        for (bucket, bytes) in by_bucket {
            let path = self.path_of(bucket);
            let opened = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path);
            let mut file = match opened {
                Ok(file) => file,
                Err(e) => {
                    self.complete.store(false, Ordering::Release);
                    return Err(AppError::storage(format!("{}: {e}", path.display())));
                }
            };
            let before = file.metadata().map(|m| m.len()).unwrap_or(0);
            let mut all = Vec::new();
            if before == 0 {
                all.extend_from_slice(&self.header());
            }
            all.extend_from_slice(&bytes);
            if let Err(e) = file.write_all(&all) {
                // Not every record has its entry any more; none is left
                // torn before the next (a full disk).
                let _ = file.set_len(before);
                self.complete.store(false, Ordering::Release);
                return Err(AppError::storage(format!("{}: {e}", path.display())));
            }
            let (lo, hi) = ranges[&bucket];
            let range = files.ranges.entry(bucket).or_insert((lo, hi));
            *range = (range.0.min(lo), range.1.max(hi));
        }
        Ok(())
    }

    /// Marks every record from `from` on as having its entry (a backfill
    /// of the records from `from` to the projection's start is done).
    pub(crate) fn covered_from(&self, from: u64) {
        self.files().covered_from = Some(from);
        self.complete.store(true, Ordering::Release);
    }

    /// Records, beside a snapshot of the projection at `position` (whose
    /// record has `event_id`), that every record since the first covered
    /// up to it has its entry, so that a start from that snapshot keeps
    /// the files. Nothing while the entries are incomplete.
    pub(crate) fn note_snapshot(&self, position: u64, event_id: uuid::Uuid) {
        if !self.is_complete() {
            return;
        }
        let Some(from) = self.files().covered_from else {
            return;
        };
        let text = format!("{from} {position} {event_id} {}\n", self.stamp_sum());
        let temporary = self.covered_path().with_extension("tmp");
        let written = std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, self.covered_path()));
        if let Err(e) = written {
            tracing::warn!(error = %e, "the replaced states' coverage was not recorded");
        }
    }

    /// Removes the files all of whose entries are before `first` (the
    /// first record whose date past views still keep).
    pub(crate) fn prune(&self, first: u64) {
        let mut files = self.files();
        let old: Vec<u64> = files
            .ranges
            .iter()
            .filter(|(_, (_, hi))| *hi < first)
            .map(|(bucket, _)| *bucket)
            .collect();
        for bucket in old {
            files.ranges.remove(&bucket);
            if let Err(e) = std::fs::remove_file(self.path_of(bucket)) {
                tracing::warn!(error = %e, "an old file of replaced states was not removed");
            }
        }
        if let Some(from) = files.covered_from.as_mut() {
            *from = (*from).max(first);
        }
    }

    /// The kept states replaced by the records at `wanted` (in any order),
    /// at most `upto` ([`Found`]). Files that cannot be read give none.
    pub(crate) fn find(&self, wanted: &[u64], upto: u64) -> Found {
        let mut found = Found::default();
        if wanted.is_empty() || !self.is_ready() {
            return found;
        }
        // Which positions are wanted, a bit each from the first wanted.
        let wanted: Vec<u64> = wanted.iter().copied().filter(|p| *p <= upto).collect();
        let (Some(&lo), Some(&hi)) = (wanted.iter().min(), wanted.iter().max()) else {
            return found;
        };
        let mut bits = vec![0u64; usize::try_from((hi - lo) / 64 + 1).unwrap_or(0)];
        for p in &wanted {
            let i = (p - lo) as usize;
            bits[i / 64] |= 1 << (i % 64);
        }
        let is_wanted = |p: u64| {
            (lo..=hi).contains(&p) && {
                let i = (p - lo) as usize;
                bits[i / 64] & (1 << (i % 64)) != 0
            }
        };
        // The files that may hold one, and how many entries they hold
        // (about: a file holds an entry per position of its range).
        let (buckets, entries): (Vec<u64>, Vec<u64>) = self
            .files()
            .ranges
            .iter()
            .filter(|(_, (first, last))| *last >= lo && *first <= hi)
            .map(|(bucket, (first, last))| (*bucket, last - first + 1))
            .unzip();
        // Every entry of those files is read to find the wanted ones: for
        // a few wanted spread over many files, reading their histories
        // back costs less (decision 204).
        let entries: u64 = entries.iter().sum();
        if buckets.is_empty() || (wanted.len() as u64).saturating_mul(ENTRIES_PER_WANTED) < entries
        {
            return found;
        }
        // The files mapped under the lock that [`ReplacedStates::keep`]
        // writes under: a write that fails is cut back to where the file
        // ended before it, never short of what is mapped here.
        let maps: Vec<memmap2::Mmap> = {
            let _files = self.files();
            buckets
                .iter()
                .filter_map(|bucket| map_file(&self.path_of(*bucket)))
                .collect()
        };
        let header = self.header().len();
        // The files side by side, each core taking the next file left (in
        // halves, one core read alone for the last 20 ms: the newest files
        // hold the most wanted); the wanted entries noted where they lie
        // (nothing copied).
        let files: Vec<usize> = (0..maps.len()).collect();
        let parts = crate::fold::par_batches(&files, |file| {
            let mut entries = Vec::new();
            let bytes = &maps[*file][..];
            // The head of each entry read; the wanted ones checked.
            let mut at = header;
            while let Some((p, end)) = head_at(bytes, at) {
                if is_wanted(p) {
                    match decode(bytes, at) {
                        Some(((position, on, months, _), _)) => {
                            let start = at + HEAD;
                            entries.push((position, on, months, *file as u32, start, end));
                        }
                        None => break,
                    }
                }
                at = end + 4;
            }
            Some(entries)
        });
        found.entries = parts.into_iter().flatten().collect();
        // Each wanted position's entry, by its offset from the first found
        // (a map of several hundred thousand entries was built on one core
        // while the other waited: decision 208).
        let (first, last) = found
            .entries
            .iter()
            .fold((u64::MAX, 0), |(lo, hi), (p, ..)| (lo.min(*p), hi.max(*p)));
        if first <= last {
            found.first = first;
            found.index = index_of_entries(&found.entries, first, last);
        }
        found.maps = maps;
        found
    }

    /// Counts states views took from here.
    pub(crate) fn count_used(&self, n: usize) {
        self.used.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The bytes its files hold.
    pub(crate) fn bytes(&self) -> u64 {
        let buckets: Vec<u64> = self.files().ranges.keys().copied().collect();
        buckets
            .into_iter()
            .filter_map(|b| std::fs::metadata(self.path_of(b)).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// A kept state found: its position, the day it was evaluated on, its
/// record months when known, its file and where its bytes start and end.
type FoundEntry = (u64, NaiveDate, Option<CwtMonths>, u32, usize, usize);

/// Each position's entry among `entries` from `first` to `last`, plus one
/// (0: none; of two entries of a position, the later): a share of the
/// positions filled on each core, each reading every entry and writing
/// only its own (zeroed pages are mapped as they are written).
fn index_of_entries(entries: &[FoundEntry], first: u64, last: u64) -> Vec<u32> {
    let mut index = vec![0u32; usize::try_from(last - first + 1).unwrap_or(0)];
    let share = index.len().div_ceil(crate::fold::cores().max(1)).max(1);
    std::thread::scope(|scope| {
        for (k, mine) in index.chunks_mut(share).enumerate() {
            let from = first + (k * share) as u64;
            scope.spawn(move || {
                for (i, (p, ..)) in entries.iter().enumerate() {
                    let at = p.checked_sub(from).and_then(|at| usize::try_from(at).ok());
                    if let Some(slot) = at.and_then(|at| mine.get_mut(at)) {
                        *slot = i as u32 + 1;
                    }
                }
            });
        }
    });
    index
}

/// Kept states a past view found ([`ReplacedStates::find`]): the files
/// that hold them, mapped, and for each its position, the day it was
/// evaluated on, its record months when known, its file and where its
/// bytes start and end there (in no particular order); and which entry
/// is each position's.
#[derive(Default)]
pub(crate) struct Found {
    maps: Vec<memmap2::Mmap>,
    entries: Vec<FoundEntry>,
    /// The entry of each position from `first` on, plus one (0: none).
    /// The positions found lie within the few weeks of records the files
    /// keep, so this spans at most those: some 13 MB at 1.4M pathways.
    index: Vec<u32>,
    first: u64,
}

impl Found {
    /// How many states it holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds none (no file mapped).
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.maps.is_empty()
    }

    /// Which of its states was replaced by the record at `position`, if
    /// found ([`Found::state`]).
    pub(crate) fn index_of(&self, position: u64) -> Option<u32> {
        let at = usize::try_from(position.checked_sub(self.first)?).ok()?;
        self.index.get(at)?.checked_sub(1)
    }

    /// Its `i`th state: the day it was evaluated on, its record months
    /// when known and its packed bytes.
    pub(crate) fn state(&self, i: u32) -> Option<(NaiveDate, Option<CwtMonths>, &[u8])> {
        let (_, on, months, file, start, end) = *self.entries.get(i as usize)?;
        let bytes = self.maps.get(file as usize)?.get(start..end)?;
        Some((on, months, bytes))
    }

    /// The state replaced by the record at `position`, if found
    /// ([`Found::state`]).
    #[cfg(test)]
    pub(crate) fn get(&self, position: u64) -> Option<(NaiveDate, Option<CwtMonths>, &[u8])> {
        self.state(self.index_of(position)?)
    }
}

/// A file of kept states mapped for reading, each byte once (`None` when
/// it cannot be read, or is empty).
///
/// SAFETY (of the mapping): the files are only appended to, and cut back
/// only to where they ended before a failed write, under the lock
/// [`ReplacedStates::find`] maps them under, or at start, before any view
/// reads them ([`ReplacedStates::check`]); a file removed while mapped
/// stays readable until unmapped.
fn map_file(path: &Path) -> Option<memmap2::Mmap> {
    let file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() == 0 {
        return None;
    }
    let mut options = memmap2::MmapOptions::new();
    options.populate();
    // SAFETY: see above.
    unsafe { options.map(&file) }.ok()
}

/// The directory beside a projection snapshot at `snapshot` where the
/// replaced states are kept.
pub(crate) fn dir_beside(snapshot: &Path) -> PathBuf {
    snapshot
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("replaced-states")
}

/// Pathways whose states are written afresh at a time (their entries are
/// written before the next are evaluated, so memory stays bounded).
const BACKFILL_CHUNK: usize = 32_768;

impl super::Projection {
    /// Checks the replaced states found at start against the projection
    /// (once it serves, before it folds anything more in), and, when they
    /// do not account for every record of the last [`KEEP_DAYS`](super::record_days::KEEP_DAYS) days,
    /// writes those afresh from the log on a thread of its own. Until
    /// then, views as known at a moment read those pathways back.
    pub(super) fn prepare_replaced(self: &std::sync::Arc<Self>) {
        let Some(store) = self.replaced.clone() else {
            return;
        };
        let (position, window_first, today) = {
            let data = self.read();
            let first = data.record_days.first().unwrap_or(data.position + 1);
            (data.position, first, data.today)
        };
        let event_id = match position {
            0 => None,
            _ => self
                .runtime
                .block_on(self.log.read_positions(&[position]))
                .ok()
                .and_then(|r| r.first().map(|r| r.event_id)),
        };
        let complete = match store.check(position, event_id, window_first) {
            Ok(complete) => complete,
            Err(e) => {
                tracing::warn!(error = %e, "the replaced states found at start were not checked");
                return;
            }
        };
        if complete {
            return;
        }
        let Some(today) = today else {
            return;
        };
        if window_first > position {
            store.covered_from(window_first);
            return;
        }
        let projection = self.clone();
        let spawned = std::thread::Builder::new()
            .name("openptl-replaced".into())
            .spawn(move || {
                let started = std::time::Instant::now();
                match projection.backfill_replaced(&store, window_first, position, today) {
                    Ok(kept) => {
                        store.covered_from(window_first);
                        tracing::info!(
                            from = window_first,
                            to = position,
                            states = kept,
                            mib = store.bytes() / 1_048_576,
                            ms = started.elapsed().as_millis() as u64,
                            "the last days' replaced states written from the log"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "the last days' replaced states were not written")
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "the replaced states could not be written");
        }
    }

    /// Writes the state every pathway had before each of its records from
    /// `from` to `to`, evaluated on `today` from its history up to it, as
    /// a refresh would have kept it. How many.
    fn backfill_replaced(
        &self,
        store: &ReplacedStates,
        from: u64,
        to: u64,
        today: NaiveDate,
    ) -> Result<usize, AppError> {
        // A slice of the projection's pathways at a time, in the order
        // they first appeared (so of their first records: reads go
        // forwards); only the slice's positions are copied, so that what
        // the backfill holds stays small and leaves nothing behind.
        let total = self.read().pathways.len();
        let mut kept = 0;
        for first in (0..total).step_by(BACKFILL_CHUNK) {
            let chunk: Vec<crate::fold::PathwayRecords> = {
                let data = self.read();
                let slice = &data.pathways.as_slice()[first..(first + BACKFILL_CHUNK).min(total)];
                slice
                    .iter()
                    .filter(|(_, entry)| entry.positions.last().is_some_and(|last| last >= from))
                    .filter_map(|(id, entry)| {
                        let mut positions = entry.positions.to_vec();
                        positions.retain(|p| *p <= to);
                        // A record in the range that is not its first.
                        let replaces = positions.iter().skip(1).any(|p| *p >= from);
                        replaces.then(|| (id.clone(), positions))
                    })
                    .collect()
            };
            if chunk.is_empty() {
                continue;
            }
            let index: HashMap<&str, usize> = chunk
                .iter()
                .enumerate()
                .map(|(i, (id, _))| (&**id, i))
                .collect();
            let states = crate::fold::fold_pathways(
                self.log.as_ref(),
                &self.runtime,
                to,
                &chunk,
                |id, history| {
                    let history = history?;
                    let positions = &chunk[*index.get(&**id)?].1;
                    let mut out: Vec<Replaced> = Vec::new();
                    for k in 1..history.len().min(positions.len()) {
                        if positions[k] < from {
                            continue;
                        }
                        if let Some((months, bytes)) = self.replaced_state(&history[..k], today) {
                            out.push((positions[k], today, Some(months), bytes));
                        }
                    }
                    Some(out)
                },
            )?;
            let states: Vec<Replaced> = states.into_iter().flatten().flatten().collect();
            kept += states.len();
            store.keep(&states)?;
        }
        Ok(kept)
    }

    /// The states refreshes replaced, when kept.
    pub(crate) fn replaced(&self) -> Option<&ReplacedStates> {
        self.replaced.as_deref()
    }

    /// Of the replaced states kept, if any: whether every record of the
    /// last days has its entry, the bytes their files hold, and how many
    /// states views have taken from them (for the benchmark).
    pub fn replaced_states(&self) -> Option<(bool, u64, u64)> {
        let store = self.replaced.as_deref()?;
        Some((store.is_complete(), store.bytes(), store.used()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
    }

    fn month(text: &str) -> Period {
        Period::parse(text).unwrap()
    }

    /// Each position found is looked up to its entry (the later of two),
    /// across the shares the cores fill, and no other position is.
    #[test]
    fn found_positions_are_indexed_to_their_entries() {
        let positions = [10u64, 15, 12, 15, 30, 21, 20];
        let entries: Vec<_> = positions
            .iter()
            .map(|p| (*p, day(1), None, 0, 0, 0))
            .collect();
        let found = Found {
            index: index_of_entries(&entries, 10, 30),
            first: 10,
            entries,
            ..Found::default()
        };
        let expected = |p: u64| positions.iter().rposition(|q| *q == p).map(|i| i as u32);
        for p in 0..40 {
            assert_eq!(found.index_of(p), expected(p), "position {p}");
        }
        assert_eq!(found.index_of(15), Some(3));
        assert_eq!(Found::default().index_of(10), None);
    }

    /// A state kept: its record months are not known at even positions;
    /// at odd ones it has records in October and in a month from 0 to 7
    /// months after it.
    fn state(position: u64, d: u32) -> Replaced {
        let october = month("2026-10");
        let later = Period::from_number(october.number() as i32 + (position % 8) as i32);
        let months = (position % 2 == 1).then(|| CwtMonths::of(october, [october, later]));
        (position, day(d), months, vec![position as u8; 40].into())
    }

    fn find_all(store: &ReplacedStates, wanted: &[u64]) -> Vec<Replaced> {
        let found = store.find(wanted, 10 * BUCKET);
        wanted
            .iter()
            .filter_map(|p| {
                let (on, months, bytes) = found.get(*p)?;
                Some((*p, on, months, bytes.into()))
            })
            .collect()
    }

    #[test]
    fn record_months_tell_only_their_eight_months() {
        let first = month("2026-10");
        let months = CwtMonths::of(first, [month("2026-08"), first, month("2027-05")]);
        assert_eq!(months.has(month("2026-08")), None, "before the first");
        assert_eq!(months.has(month("2026-09")), None);
        assert_eq!(months.has(first), Some(true));
        assert_eq!(months.has(month("2026-11")), Some(false));
        assert_eq!(months.has(month("2027-05")), Some(true), "the eighth");
        assert_eq!(months.has(month("2027-06")), None, "after the eighth");
        let none = CwtMonths::of(first, []);
        assert_eq!(none.has(month("2026-12")), Some(false));
        // Any first month a file may hold answers.
        let odd = CwtMonths {
            first: Period::from_number(i32::MIN + 1),
            bits: 0xff,
        };
        assert_eq!(odd.has(month("2026-12")), None);
    }

    /// Kept states are found by position across files; a start from the
    /// snapshot they were noted with keeps them, cuts a torn entry and
    /// drops those after the snapshot; another binary's or rules' files,
    /// or files that do not account for the last days, are removed.
    #[test]
    fn kept_states_survive_a_start_only_when_they_fit() {
        let dir = tempfile::tempdir().unwrap();
        let config = RulesConfig::defaults();
        let id = uuid::Uuid::from_u128(7);
        let store = ReplacedStates::new(dir.path().join("replaced"), &config);
        // Nothing is kept before the check.
        store.keep(&[state(3, 1)]).unwrap();
        assert!(!store.check(10, Some(id), 1).unwrap());
        assert!(find_all(&store, &[3]).is_empty());
        store.covered_from(1);
        let kept = [state(5, 2), state(BUCKET + 9, 3), state(12, 4)];
        store.keep(&kept).unwrap();
        store.keep(&[state(2 * BUCKET, 5)]).unwrap();
        let found = find_all(&store, &[5, 12, BUCKET + 9, 2 * BUCKET, 6]);
        assert_eq!(
            found,
            [
                state(5, 2),
                state(12, 4),
                state(BUCKET + 9, 3),
                state(2 * BUCKET, 5)
            ]
        );
        assert_eq!(found[0].3, vec![5u8; 40].into());
        assert_eq!(found[2].2.unwrap().has(month("2026-11")), Some(true));
        // Only those at most `upto`.
        assert_eq!(store.find(&[5, 12], 11).len(), 1);
        store.note_snapshot(BUCKET + 9, id);
        // A torn entry at the end of the first file.
        let first = dir
            .path()
            .join("replaced")
            .join(format!("{:010}.states", 0));
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&first)
            .unwrap();
        file.write_all(&[1, 2, 3]).unwrap();
        drop(file);

        // A start at the snapshot's position: kept, but for the torn
        // bytes and the state after the snapshot.
        let again = ReplacedStates::new(dir.path().join("replaced"), &config);
        assert!(again.check(BUCKET + 9, Some(id), 4).unwrap());
        assert_eq!(find_all(&again, &[5, 12, BUCKET + 9, 2 * BUCKET]).len(), 3);
        let bytes = std::fs::read(&first).unwrap();
        assert!(decode(&bytes, again.header().len()).is_some());
        again.keep(&[state(20, 6)]).unwrap();
        assert_eq!(find_all(&again, &[5, 12, 20]).len(), 3);

        // Another rules configuration: removed, and written afresh.
        let mut other = RulesConfig::defaults();
        other.targets.fds_days += 1;
        let changed = ReplacedStates::new(dir.path().join("replaced"), &other);
        assert!(!changed.check(BUCKET + 9, Some(id), 4).unwrap());
        assert!(find_all(&changed, &[5, 12, 20]).is_empty());
        changed.keep(&[state(21, 6)]).unwrap();
        assert_eq!(find_all(&changed, &[21]).len(), 1);

        // Another position (a crash after the snapshot): removed too.
        changed.covered_from(1);
        changed.note_snapshot(30, id);
        let later = ReplacedStates::new(dir.path().join("replaced"), &other);
        assert!(!later.check(31, Some(id), 4).unwrap());
        assert!(find_all(&later, &[21]).is_empty());

        // Old files go once all their states are before the first kept.
        later.keep(&[state(8, 1), state(BUCKET + 1, 2)]).unwrap();
        later.prune(BUCKET);
        assert_eq!(find_all(&later, &[8, BUCKET + 1]).len(), 1);
    }
}
