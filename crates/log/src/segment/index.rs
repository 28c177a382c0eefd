//! The layout of the sled index (SPEC 9: stream id → positions, event id →
//! position), all of it derived from the segments and rebuilt from them.
//!
//! sled 0.34 splits a leaf page at 16 items and keeps a page-table entry in
//! memory for every page, so its memory and its open time grow with the
//! number of items, not their size: one item per stream version and one per
//! event id took about 75 bytes of resident memory a record and 2.5 s to
//! open at 10M records. This layout holds few, larger items (decision 66):
//!
//! - `p` + stream id (u16 length, bytes) → the stream's positions, 8 bytes
//!   each (big-endian), version `v` at `[8(v-1), 8v)`.
//! - `i` + bucket (u32, big-endian) → the (event id, position) pairs of the
//!   ids in that bucket, 16 + 8 bytes each. The bucket is the top
//!   [`BUCKET_BITS`] of the id's CRC32C: stable forever, and spread evenly
//!   whatever kind of UUID a client sends (time-ordered ones included).
//! - `m/indexed` → the last position indexed; `m/layout` → [`LAYOUT`].
//!
//! Entries are added with sled's merge operator ([`merge`]), which is
//! idempotent: a catch-up that re-indexes records sled already holds (after
//! a crash, sled recovers a prefix of its writes) changes nothing.

use foldhash::HashMap;
use uuid::Uuid;

/// This layout's number, stored under `m/layout`. An index of an earlier
/// layout (or of the first, which stored none) is rebuilt at open; one of a
/// later layout, written by a newer OpenPTL, is refused ([`newer`],
/// decision 91): `openptl rebuild-index` rebuilds it on purpose.
pub const LAYOUT: u64 = 2;
const LAYOUT_KEY: &[u8] = b"m/layout";
/// The last position whose entries sled holds.
const INDEXED: &[u8] = b"m/indexed";
/// Bits of an event id's bucket: about a million buckets, ten ids each at
/// 10M records (240-byte values).
const BUCKET_BITS: u32 = 20;
const POSITION: usize = 8;
const ID_ENTRY: usize = 16 + POSITION;

fn stream_key(stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(3 + stream.len());
    key.push(b'p');
    key.extend_from_slice(&(stream.len() as u16).to_be_bytes());
    key.extend_from_slice(stream.as_bytes());
    key
}

fn bucket_of(id: &Uuid) -> u32 {
    crc32c::crc32c(id.as_bytes()) >> (32 - BUCKET_BITS)
}

fn bucket_key(bucket: u32) -> [u8; 5] {
    let mut key = [b'i', 0, 0, 0, 0];
    key[1..].copy_from_slice(&bucket.to_be_bytes());
    key
}

fn be_u64(bytes: &[u8]) -> u64 {
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}

/// sled's merge operator for the index: adds the operand's entries to what
/// a key holds, skipping those it already holds.
///
/// - A stream's operand is its first version (8 bytes) then the positions
///   from that version on; versions the value already has are skipped.
/// - A bucket's operand is (id, position) pairs; ids the value already has
///   are skipped.
///
/// A mark (`m/…`) takes the operand as its value; anything else keeps what
/// it held.
pub fn merge(key: &[u8], old: Option<&[u8]>, operand: &[u8]) -> Option<Vec<u8>> {
    let old = old.unwrap_or_default();
    match key.first() {
        Some(b'p') if operand.len() < POSITION => {
            tracing::error!("a malformed index entry of a stream; kept what the index had");
            Some(old.to_vec())
        }
        Some(b'p') => {
            let have = old.len() / POSITION;
            let first = be_u64(operand);
            let positions = &operand[POSITION..];
            let mut value = old[..have * POSITION].to_vec();
            match usize::try_from(first).ok().and_then(|f| f.checked_sub(1)) {
                Some(skip) if skip <= have => {
                    let skip = (have - skip) * POSITION;
                    let new = positions.get(skip..).unwrap_or_default();
                    value.extend_from_slice(&new[..new.len() / POSITION * POSITION]);
                }
                // A gap: the versions between were never indexed. Cannot
                // happen when entries are added in log order; `verify`
                // reports a stream the index holds wrongly.
                _ => tracing::error!(
                    first,
                    have,
                    "index entries of a stream arrived out of order; kept what the index had"
                ),
            }
            Some(value)
        }
        Some(b'i') => {
            let have = old.len() / ID_ENTRY * ID_ENTRY;
            let mut value = old[..have].to_vec();
            for entry in operand.chunks_exact(ID_ENTRY) {
                if !value.chunks_exact(ID_ENTRY).any(|e| e[..16] == entry[..16]) {
                    value.extend_from_slice(entry);
                }
            }
            Some(value)
        }
        _ if key.starts_with(b"m/") => Some(operand.to_vec()),
        _ => {
            tracing::error!("a merge into an unknown index key; kept what the index had");
            Some(old.to_vec())
        }
    }
}

/// Opens (or creates) a sled index at `path` with the index's merge
/// operator and the given cache size. A new (empty) index is marked with
/// this layout.
pub fn open(path: &std::path::Path, cache_bytes: u64) -> sled::Result<sled::Db> {
    let db = sled::Config::new()
        .path(path)
        .flush_every_ms(Some(1000))
        .cache_capacity(cache_bytes)
        .open()?;
    db.set_merge_operator(merge);
    if db.is_empty() {
        db.insert(LAYOUT_KEY, &LAYOUT.to_be_bytes())?;
    }
    Ok(db)
}

/// The last position the index holds (0 when empty).
pub fn indexed(index: &sled::Db) -> sled::Result<u64> {
    Ok(index.get(INDEXED)?.map_or(0, |v| be_u64(&v)))
}

/// Whether the index is of this layout (an index of another is rebuilt
/// from the segments: emptying it in place takes sled far longer).
pub fn is_current(index: &sled::Db) -> sled::Result<bool> {
    Ok(index
        .get(LAYOUT_KEY)?
        .is_some_and(|v| v.len() == 8 && be_u64(&v) == LAYOUT))
}

/// The layout of an index written by a newer OpenPTL (`None` for this
/// layout or an earlier one).
pub fn newer(index: &sled::Db) -> sled::Result<Option<u64>> {
    Ok(index
        .get(LAYOUT_KEY)?
        .filter(|v| v.len() == 8)
        .map(|v| be_u64(&v))
        .filter(|layout| *layout > LAYOUT))
}

/// What to tell the operator about an index of a newer `layout`.
pub fn newer_message(layout: u64) -> String {
    format!(
        "the index is of layout {layout}, written by a newer OpenPTL (this binary reads layout {LAYOUT}): run that version or a later one; to go back to this version on purpose, run `openptl rebuild-index` with it (the index is rebuilt from the segments)"
    )
}

/// The positions of a stream's versions, in version order.
pub fn stream_positions(index: &sled::Db, stream: &str) -> sled::Result<Vec<u64>> {
    Ok(index
        .get(stream_key(stream))?
        .map_or_else(Vec::new, |v| v.chunks_exact(POSITION).map(be_u64).collect()))
}

/// The last version of a stream the index holds (0 for none).
pub fn stream_version(index: &sled::Db, stream: &str) -> sled::Result<u64> {
    Ok(index
        .get(stream_key(stream))?
        .map_or(0, |v| (v.len() / POSITION) as u64))
}

/// Where the event with `id` is, if the index holds it.
pub fn event_position(index: &sled::Db, id: &Uuid) -> sled::Result<Option<u64>> {
    Ok(index.get(bucket_key(bucket_of(id)))?.and_then(|v| {
        v.chunks_exact(ID_ENTRY)
            .find(|e| e[..16] == id.as_bytes()[..])
            .map(|e| be_u64(&e[16..]))
    }))
}

/// Index entries gathered for one write: each stream's and each bucket's
/// new entries become one merge.
#[derive(Default)]
pub struct Entries {
    /// Stream → (its first version here, positions from that version on).
    streams: HashMap<String, (u64, Vec<u64>)>,
    /// Bucket → (id, position) pairs.
    buckets: HashMap<u32, Vec<u8>>,
    records: usize,
    last: u64,
}

impl Entries {
    /// Records gathered.
    pub fn len(&self) -> usize {
        self.records
    }

    /// Adds one record's entries. Records are added in log order, so a
    /// stream's versions arrive one after another.
    pub fn add(&mut self, stream: &str, version: u64, id: &Uuid, position: u64) {
        match self.streams.get_mut(stream) {
            Some((first, positions)) if *first + positions.len() as u64 == version => {
                positions.push(position);
            }
            // A version added before: already gathered.
            Some((first, positions))
                if version >= *first && version < *first + positions.len() as u64 => {}
            Some(_) => {
                // A gap (only from a log whose stream versions are not
                // contiguous, which `verify` reports): not indexed.
                tracing::error!(
                    version,
                    "index entries of a stream were added out of order; left out"
                );
            }
            None => {
                self.streams
                    .insert(stream.to_owned(), (version, vec![position]));
            }
        }
        let bucket = self
            .buckets
            .entry(bucket_of(id))
            .or_insert_with(|| Vec::with_capacity(ID_ENTRY));
        bucket.extend_from_slice(id.as_bytes());
        bucket.extend_from_slice(&position.to_be_bytes());
        self.records += 1;
        self.last = self.last.max(position);
    }

    /// Merges the entries into sled in key order, then marks the last
    /// position indexed, and empties `self`. One write at a time: sled
    /// recovers a prefix of its writes, so the mark, written last, is seen
    /// after a crash only with every entry before it (sled 0.34's
    /// `apply_batch` also held far more memory).
    pub fn write(&mut self, index: &sled::Db) -> sled::Result<()> {
        if self.records == 0 {
            return Ok(());
        }
        let mut buckets: Vec<_> = self.buckets.drain().collect();
        buckets.sort_unstable_by_key(|(bucket, _)| *bucket);
        for (bucket, pairs) in buckets {
            index.merge(bucket_key(bucket), pairs)?;
        }
        let mut streams: Vec<_> = self
            .streams
            .drain()
            .map(|(stream, entries)| (stream_key(&stream), entries))
            .collect();
        streams.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut operand = Vec::new();
        for (key, (first, positions)) in streams {
            operand.clear();
            operand.extend_from_slice(&first.to_be_bytes());
            for p in positions {
                operand.extend_from_slice(&p.to_be_bytes());
            }
            index.merge(key, &operand)?;
        }
        index.insert(INDEXED, &self.last.to_be_bytes())?;
        *self = Entries::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = open(dir.path(), 1 << 20).unwrap();
        (dir, db)
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn entries_written_twice_are_held_once() {
        let (_dir, db) = scratch();
        assert!(is_current(&db).unwrap());
        let write = |db: &sled::Db| {
            let mut e = Entries::default();
            e.add("a", 1, &id(1), 1);
            e.add("b", 1, &id(2), 2);
            e.add("a", 2, &id(3), 3);
            e.write(db).unwrap();
        };
        write(&db);
        write(&db);
        assert_eq!(stream_positions(&db, "a").unwrap(), vec![1, 3]);
        assert_eq!(stream_version(&db, "b").unwrap(), 1);
        assert_eq!(stream_version(&db, "c").unwrap(), 0);
        assert_eq!(event_position(&db, &id(3)).unwrap(), Some(3));
        assert_eq!(event_position(&db, &id(4)).unwrap(), None);
        assert_eq!(indexed(&db).unwrap(), 3);
    }

    #[test]
    fn a_stream_grows_across_writes_that_overlap() {
        let (_dir, db) = scratch();
        let mut e = Entries::default();
        e.add("s", 1, &id(1), 10);
        e.add("s", 2, &id(2), 20);
        e.write(&db).unwrap();
        // A catch-up after a crash re-adds version 2 with version 3.
        e.add("s", 2, &id(2), 20);
        e.add("s", 3, &id(3), 30);
        e.write(&db).unwrap();
        assert_eq!(stream_positions(&db, "s").unwrap(), vec![10, 20, 30]);
    }

    #[test]
    fn a_gap_in_a_stream_keeps_what_was_held() {
        let held = [0u8, 0, 0, 0, 0, 0, 0, 10];
        let mut gap = 3u64.to_be_bytes().to_vec();
        gap.extend_from_slice(&30u64.to_be_bytes());
        assert_eq!(merge(b"p\0\x01s", Some(&held), &gap), Some(held.to_vec()));
        // Version 0 does not exist: nothing is added.
        let mut zero = 0u64.to_be_bytes().to_vec();
        zero.extend_from_slice(&30u64.to_be_bytes());
        assert_eq!(merge(b"p\0\x01s", Some(&held), &zero), Some(held.to_vec()));
        // A malformed operand, or a key of no known kind, keeps the value.
        assert_eq!(
            merge(b"p\0\x01s", Some(&held), &[1, 2]),
            Some(held.to_vec())
        );
        assert_eq!(merge(b"x", Some(&held), &gap), Some(held.to_vec()));
        // A mark takes the operand.
        assert_eq!(merge(b"m/indexed", Some(&held), &gap), Some(gap.clone()));
    }

    #[test]
    fn ids_sharing_a_bucket_are_told_apart() {
        let (_dir, db) = scratch();
        // Sequential ids until two share a bucket.
        let first = id(0);
        let other = (1..)
            .map(id)
            .find(|i| bucket_of(i) == bucket_of(&first))
            .unwrap();
        let mut e = Entries::default();
        e.add("a", 1, &first, 1);
        e.add("b", 1, &other, 2);
        e.write(&db).unwrap();
        assert_eq!(event_position(&db, &first).unwrap(), Some(1));
        assert_eq!(event_position(&db, &other).unwrap(), Some(2));
    }

    #[test]
    fn a_new_index_is_current_and_one_of_another_layout_is_not() {
        let (dir, db) = scratch();
        assert!(is_current(&db).unwrap());
        assert_eq!(indexed(&db).unwrap(), 0);
        db.remove(LAYOUT_KEY).unwrap();
        db.insert(INDEXED, &5u64.to_be_bytes()).unwrap();
        db.flush().unwrap();
        drop(db);
        let db = open(dir.path(), 1 << 20).unwrap();
        assert!(!is_current(&db).unwrap());
    }

    #[test]
    fn an_index_of_a_newer_layout_is_told_apart() {
        let (dir, db) = scratch();
        assert_eq!(newer(&db).unwrap(), None);
        db.insert(LAYOUT_KEY, &(LAYOUT + 1).to_be_bytes()).unwrap();
        db.flush().unwrap();
        drop(db);
        let db = open(dir.path(), 1 << 20).unwrap();
        assert!(!is_current(&db).unwrap());
        assert_eq!(newer(&db).unwrap(), Some(LAYOUT + 1));
        assert!(newer_message(LAYOUT + 1).contains("newer OpenPTL"));
    }

    #[test]
    fn buckets_spread_time_ordered_ids() {
        // UUIDv7-like ids share their leading bytes; their buckets must not.
        let buckets: std::collections::HashSet<u32> = (0..1000u128)
            .map(|n| bucket_of(&id((0x0190_0000_0000_7000u128 << 64) | n)))
            .collect();
        assert!(buckets.len() > 990, "{} buckets", buckets.len());
    }
}
