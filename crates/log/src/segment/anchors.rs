//! `openptl verify --anchors`: checks a stopped log (or a copy of one)
//! against the anchors published while it ran ([`crate::anchor`]).
//!
//! Plain `verify` proves the records chain together; it cannot tell a log
//! from one whose tail was rewritten with a recomputed chain. An anchor
//! taken before the rewrite can: the record at its position no longer
//! hashes to what it says, or is gone.

use std::collections::BTreeMap;
use std::path::Path;

use super::{list_segments, map_segment, record, Hash};
use crate::anchor::{Anchor, AnchorError};

/// Checks that for every anchor the record at its position exists and
/// hashes to the anchored hash. Fails naming the first anchor (in the
/// file's order) that no longer matches, whether the record there changed
/// or the log now ends before it. Returns how many anchors were checked.
///
/// Reads the segments in order once, hashing only the anchored records,
/// and skips segments that hold none (a segment's first position is read
/// from its first record). Changes nothing.
pub fn verify_anchors(dir: &Path, anchors: &[Anchor]) -> Result<usize, AnchorError> {
    let log_error = |e: String| AnchorError::Log(e);
    let segments = list_segments(&dir.join("segments")).map_err(|e| log_error(e.to_string()))?;
    // Position → the hash of the record there, once found.
    let mut found: BTreeMap<u64, Option<Hash>> = anchors
        .iter()
        .filter(|a| a.position > 0)
        .map(|a| (a.position, None))
        .collect();
    let firsts: Vec<Option<u64>> = segments
        .iter()
        .map(|(_, path)| first_position(path))
        .collect();
    let mut head = 0u64;
    for (i, (number, path)) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        // The positions this segment may hold: from its first to the next
        // one's first (unknown bounds are taken as open).
        let from = firsts[i].unwrap_or(head + 1);
        let until = if last {
            None
        } else {
            firsts[i + 1..].iter().flatten().next().copied()
        };
        let wanted = found
            .range(from..until.unwrap_or(u64::MAX))
            .next()
            .is_some();
        if !wanted && !last {
            head = until.map_or(head, |u| u - 1);
            continue;
        }
        let map = map_segment(path, super::Access::Whole)
            .map_err(|e| log_error(format!("{}: {e}", path.display())))?;
        let bytes = map.as_deref().unwrap_or_default();
        let mut at = 0usize;
        while at < bytes.len() {
            at += record::mark_len(&bytes[at..]);
            if at >= bytes.len() {
                break;
            }
            let this = match record::head(&bytes[at..]) {
                Ok(h) => h,
                // A torn tail of the last segment: the log ends here (plain
                // `verify` reports it; the next start cuts it off).
                Err(_) if last => break,
                Err(d) => {
                    return Err(log_error(format!(
                        "segment {number} offset {at}: {} (run `openptl verify`)",
                        d.problem()
                    )))
                }
            };
            if let Some(slot) = found.get_mut(&this.position) {
                let checked = record::check(&bytes[at..]).map_err(|d| {
                    log_error(format!(
                        "segment {number} offset {at}: {} (run `openptl verify`)",
                        d.problem()
                    ))
                })?;
                *slot = Some(record::hash(&bytes[at..at + checked.len]));
            }
            head = this.position;
            at += this.len;
        }
    }
    crate::anchor::check(anchors, &found, head)
}

/// The position of a segment's first record, read from its first bytes
/// (`None` when it is empty or does not start with a record).
fn first_position(path: &Path) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).ok()?;
    let mut prefix = [0u8; record::PREFIX + 8];
    file.read_exact_at(&mut prefix, 0).ok()?;
    // A segment's first batch may begin with its mark (decision 189).
    let skip = record::mark_len(&prefix);
    if skip > 0 {
        file.read_exact_at(&mut prefix, skip as u64).ok()?;
    }
    record::claimed_len(&prefix).ok()?;
    Some(u64::from_be_bytes(
        prefix[record::PREFIX..].try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{scan, verify, SegmentLog};
    use super::*;
    use crate::anchor::{self, hex, ChainHead};
    use crate::suite::record as new_record;
    use crate::{EventLog, StoredRecord};
    use std::fs;

    /// A log of `n` records (four streams), anchored after every tenth.
    async fn anchored_log(dir: &Path, n: u64) -> Vec<Anchor> {
        let log = SegmentLog::open_with_segment_size(dir, 2048).unwrap();
        let mut anchors = Vec::new();
        for i in 1..=n {
            log.append(vec![new_record(
                &format!("s{}", i % 4),
                None,
                &[i as u8; 40],
            )])
            .await
            .unwrap();
            if i % 10 == 0 {
                let head = log.chain_head().await.unwrap().unwrap();
                assert_eq!(head.position, i);
                let taken = chrono::DateTime::from_timestamp(1_780_000_000 + i as i64, 0).unwrap();
                anchors.push(Anchor::of(head, taken));
            }
        }
        anchors
    }

    /// Every record of the log in `dir`, as stored.
    fn records(dir: &Path) -> Vec<StoredRecord> {
        let mut out = Vec::new();
        scan(&dir.join("segments"), false, |found| {
            out.push(found.record.clone())
        })
        .unwrap();
        out
    }

    /// Rewrites every record from `from` on with another payload and a
    /// recomputed hash chain (what someone covering their tracks would do):
    /// the segments holding them are cut where `from` starts, and the new
    /// records are written after it.
    fn rewrite_tail(dir: &Path, from: u64) {
        let all = records(dir);
        let mut hash = [0u8; 32];
        for r in &all[..(from - 1) as usize] {
            hash = super::super::record_hash(r, &hash);
        }
        // Where `from` starts, and the segments after.
        let mut start = None;
        scan(&dir.join("segments"), false, |found| {
            if found.record.position == from {
                start = Some((found.segment, found.offset));
            }
        })
        .unwrap();
        let (segment, offset) = start.unwrap();
        let segments = list_segments(&dir.join("segments")).unwrap();
        for (number, path) in &segments {
            if *number > segment {
                fs::remove_file(path).unwrap();
            }
        }
        let path = dir
            .join("segments")
            .join(super::super::segment_name(segment));
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(offset as usize);
        for r in &all[(from - 1) as usize..] {
            let mut altered = r.clone();
            altered.payload = b"altered".to_vec();
            hash = record::encode(&altered, &hash, &mut bytes);
        }
        fs::write(&path, bytes).unwrap();
        // The index is derived; the copy's is rebuilt as a thief would.
        let _ = fs::remove_dir_all(dir.join("index"));
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to.join("segments")).unwrap();
        for entry in fs::read_dir(from.join("segments")).unwrap() {
            let path = entry.unwrap().path();
            fs::copy(&path, to.join("segments").join(path.file_name().unwrap())).unwrap();
        }
    }

    #[tokio::test]
    async fn a_tail_rewritten_with_a_recomputed_chain_passes_verify_but_not_the_anchors() {
        let original = tempfile::tempdir().unwrap();
        let anchors = anchored_log(original.path(), 50).await;
        assert_eq!(anchors.len(), 5);
        // Written through the anchors file, as the service does.
        let file = original.path().join("anchors.jsonl");
        for a in &anchors {
            anchor::append(&file, a).unwrap();
        }
        let anchors = anchor::read(&file).unwrap().anchors;
        assert_eq!(verify_anchors(original.path(), &anchors).unwrap(), 5);

        let copy = tempfile::tempdir().unwrap();
        copy_dir(original.path(), copy.path());
        assert_eq!(verify_anchors(copy.path(), &anchors).unwrap(), 5);
        rewrite_tail(copy.path(), 25);
        let report = verify(copy.path()).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.records, 50);
        // Anchors 1 and 2 (positions 10, 20) still hold; 3 (position 30) is the first that does not.
        let refused = verify_anchors(copy.path(), &anchors).unwrap_err();
        assert!(
            matches!(
                refused,
                AnchorError::Mismatch {
                    number: 3,
                    position: 30,
                    ..
                }
            ),
            "{refused}"
        );
        let message = refused.to_string();
        assert!(
            message.contains("anchor 3 (position 30, taken 2026-05-28")
                && message.contains("no longer matches"),
            "{message}"
        );
        // The rewritten log opens, and its chain head is not the anchored one.
        let log = SegmentLog::open(copy.path()).unwrap();
        let head: ChainHead = log.chain_head().await.unwrap().unwrap();
        assert_eq!(head.position, 50);
        assert_ne!(hex(&head.hash), anchors[4].hash);
    }

    #[tokio::test]
    async fn a_cut_tail_fails_at_the_first_anchor_past_the_end() {
        let original = tempfile::tempdir().unwrap();
        let anchors = anchored_log(original.path(), 40).await;
        let copy = tempfile::tempdir().unwrap();
        copy_dir(original.path(), copy.path());
        // Cut the log after position 17: drop what follows it.
        let mut cut = None;
        scan(&copy.path().join("segments"), false, |found| {
            if found.record.position == 18 {
                cut = Some((found.segment, found.offset));
            }
        })
        .unwrap();
        let (segment, offset) = cut.unwrap();
        for (number, path) in list_segments(&copy.path().join("segments")).unwrap() {
            if number > segment {
                fs::remove_file(path).unwrap();
            } else if number == segment {
                fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .unwrap()
                    .set_len(offset)
                    .unwrap();
            }
        }
        assert!(verify(copy.path()).unwrap().problems.is_empty());
        let refused = verify_anchors(copy.path(), &anchors).unwrap_err();
        assert!(
            matches!(
                refused,
                AnchorError::Missing {
                    number: 2,
                    position: 20,
                    head: 17,
                    ..
                }
            ),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("ends at position 17"),
            "{refused}"
        );
    }
}
