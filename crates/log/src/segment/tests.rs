//! Segment log tests: the shared suite, restarts, torn tails, corruption.

use super::*;
use crate::suite::{self, record};

fn open(dir: &Path) -> SegmentLog {
    SegmentLog::open(dir).expect("open")
}

/// Waits until sled holds every record up to `position`.
fn wait_until_indexed(log: &SegmentLog, position: u64) {
    while log.shared.with_index(index::indexed).unwrap() != position {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits (up to 10 s) for the background check to report damage.
fn wait_for_damage(log: &SegmentLog) -> String {
    for _ in 0..2000 {
        if let Some(damage) = log.damage() {
            return damage;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("no damage reported");
}

#[tokio::test]
async fn segment_log_passes_the_shared_suite() {
    let root = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    suite::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = root.path().join(n.to_string());
        async move { open(&dir) }
    })
    .await;
}

#[tokio::test]
async fn everything_survives_a_restart_and_the_index_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let log = open(dir.path());
        for i in 0..20u8 {
            let r = record(&format!("s{}", i % 4), None, &[i]);
            ids.push(r.event_id);
            log.append(vec![r]).await.unwrap();
        }
    }
    // Lose the index entirely: it is derived and comes back from the segments.
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    let log = open(dir.path());
    assert_eq!(log.head(), 20);
    let all = log.read_all(1, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.payload[0]).collect::<Vec<_>>(),
        (0..20).collect::<Vec<u8>>()
    );
    assert_eq!(log.read_stream("s1").await.unwrap().len(), 5);
    assert_eq!(log.find_event(ids[7]).await.unwrap().unwrap().position, 8);
    let next = log.append(vec![record("s1", Some(5), b"x")]).await.unwrap();
    assert_eq!((next[0].position, next[0].version), (21, 6));
    // Once the event-id filter holds the reopened log's ids, a stored id is
    // still refused and a new one still accepted.
    while !log
        .shared
        .ids_ready
        .load(std::sync::atomic::Ordering::Acquire)
    {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mut reused = record("s1", Some(6), b"y");
    reused.event_id = ids[3];
    let refused = log.append(vec![reused]).await;
    assert!(
        matches!(refused, Err(LogError::DuplicateEventId { .. })),
        "{refused:?}"
    );
    assert!(log.find_event(ids[19]).await.unwrap().is_some());
    log.append(vec![record("s1", Some(6), b"z")]).await.unwrap();
    drop(log);
    let report = verify(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, 22);
}

#[tokio::test]
async fn the_indexer_reopens_sled_and_nothing_is_lost_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let log = open(dir.path());
        // Tests reopen after every 5 records: 40 appends reopen many times,
        // while readers and the writer keep using the index.
        for i in 0..40u8 {
            let r = record(&format!("s{}", i % 3), None, &[i]);
            ids.push(r.event_id);
            log.append(vec![r]).await.unwrap();
            assert_eq!(log.find_event(ids[0]).await.unwrap().unwrap().position, 1);
        }
        wait_until_indexed(&log, 40);
        let reopenings = log
            .shared
            .index_reopenings
            .load(std::sync::atomic::Ordering::Relaxed);
        assert!(reopenings >= 2, "reopened {reopenings} times");
        assert_eq!(log.read_stream("s1").await.unwrap().len(), 13);
        let mut reused = record("s2", Some(13), b"x");
        reused.event_id = ids[5];
        assert!(matches!(
            log.append(vec![reused]).await,
            Err(LogError::DuplicateEventId { .. })
        ));
    }
    // What sled holds after the last reopening survives a restart, and the
    // index agrees with the segments.
    let log = open(dir.path());
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            log.find_event(*id).await.unwrap().unwrap().position,
            i as u64 + 1
        );
    }
    assert_eq!(log.read_stream("s0").await.unwrap().len(), 14);
    drop(log);
    let report = verify(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[tokio::test]
// The indexer is held back on purpose while appends are awaited.
#[allow(clippy::await_holding_lock)]
async fn records_not_yet_in_sled_are_found_all_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(vec![record("s", None, b"0")]).await.unwrap();
    // Let the first record reach sled, then hold the indexer back.
    wait_until_indexed(&log, 1);
    let paused = log.shared.index_paused.lock().unwrap();
    let mut ids = Vec::new();
    for i in 1..6u8 {
        let r = record("s", Some(u64::from(i)), &[i]);
        ids.push(r.event_id);
        log.append(vec![r]).await.unwrap();
    }
    assert!(log
        .shared
        .with_index(|i| index::event_position(i, &ids[4]))
        .unwrap()
        .is_none());
    // The stream reads whole, ids are found and versions continue.
    let stream = log.read_stream("s").await.unwrap();
    assert_eq!(
        stream.iter().map(|r| r.version).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(log.find_event(ids[2]).await.unwrap().unwrap().position, 4);
    let stale = log.append(vec![record("s", Some(5), b"late")]).await;
    assert!(
        matches!(stale, Err(LogError::VersionConflict { .. })),
        "{stale:?}"
    );
    let mut replay = record("s", Some(6), b"x");
    replay.event_id = ids[0];
    let reused = log.append(vec![replay]).await;
    assert!(
        matches!(reused, Err(LogError::DuplicateEventId { .. })),
        "{reused:?}"
    );
    drop(paused);
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.read_stream("s").await.unwrap().len(), 6);
    assert_eq!(log.find_event(ids[4]).await.unwrap().unwrap().position, 6);
    drop(log);
    assert!(verify(dir.path()).unwrap().problems.is_empty());
}

/// While the indexer's queue is full (sled slow), the writer waits with a
/// group written and its entries waiting in memory: a stream read meanwhile
/// reads it whole (it once failed with "position N is not stored", the
/// entries being there before the records' locations, and every append of
/// the service reads its stream first).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// The indexer is held back on purpose while appends are awaited.
#[allow(clippy::await_holding_lock)]
async fn a_stream_reads_whole_while_the_indexer_queue_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    let paused = log.shared.index_paused.lock().unwrap();
    let appending = tokio::spawn({
        let log = log.clone();
        async move {
            for i in 0..(INDEX_QUEUE as u64 + 20) {
                log.append(vec![record("s", Some(i), b"x")]).await.unwrap();
            }
        }
    });
    // Until the writer waits on the full queue: the head stops moving.
    let mut last = u64::MAX;
    while log.head() != last || log.head() == 0 {
        last = log.head();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(!appending.is_finished(), "the queue never filled");
    let stream = log.read_stream("s").await.unwrap();
    assert!(
        stream.len() as u64 >= log.head(),
        "{} < {}",
        stream.len(),
        log.head()
    );
    assert!(stream
        .iter()
        .enumerate()
        .all(|(i, r)| r.version == i as u64 + 1));
    drop(paused);
    appending.await.unwrap();
    assert_eq!(log.read_stream("s").await.unwrap().len(), INDEX_QUEUE + 20);
}

#[tokio::test]
// The indexer is held back on purpose while the log is read.
#[allow(clippy::await_holding_lock)]
async fn reads_go_on_from_the_segments_when_the_index_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut ids = Vec::new();
    for i in 0..12u8 {
        let r = record(&format!("s{}", i % 3), None, &[i]);
        ids.push(r.event_id);
        log.append(vec![r]).await.unwrap();
    }
    wait_until_indexed(&log, 12);
    // sled gone (as when its disk is full and even its reads fail).
    let paused = log.shared.index_paused.lock().unwrap();
    *log.shared.index.write().unwrap() = None;
    assert!(log.shared.with_index(index::indexed).is_err());
    let s1 = log.read_stream("s1").await.unwrap();
    assert_eq!(
        s1.iter()
            .map(|r| (r.position, r.version))
            .collect::<Vec<_>>(),
        [(2, 1), (5, 2), (8, 3), (11, 4)]
    );
    assert!(s1.iter().all(|r| r.stream_id == "s1"));
    assert!(log.read_stream("absent").await.unwrap().is_empty());
    for (i, id) in ids.iter().enumerate() {
        let found = log.find_event(*id).await.unwrap().unwrap();
        assert_eq!((found.position, found.event_id), (i as u64 + 1, *id));
    }
    assert!(log.find_event(Uuid::from_u128(7)).await.unwrap().is_none());
    drop(paused);
}

#[tokio::test]
async fn a_second_opening_of_a_data_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    log.append(vec![record("s", None, b"0")]).await.unwrap();
    match SegmentLog::open(dir.path()) {
        Err(e @ OpenError::InUse { .. }) => {
            assert!(
                e.to_string().contains("in use by another openptl process"),
                "{e}"
            )
        }
        other => panic!("expected InUse, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        rebuild_index(dir.path()),
        Err(OpenError::InUse { .. })
    ));
    // The first is untouched (its index was not taken for damage).
    log.append(vec![record("s", Some(1), b"1")]).await.unwrap();
    assert_eq!(log.read_stream("s").await.unwrap().len(), 2);
    drop(log);
    let again = open(dir.path());
    assert_eq!(again.head(), 2);
}

fn only_segment(dir: &Path) -> PathBuf {
    let segments = list_segments(&dir.join("segments")).unwrap();
    segments.last().unwrap().1.clone()
}

/// The offset of every record in a segment's bytes, passing over the write
/// marks (decision 189).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        at += record::mark_len(&bytes[at..]);
        if at >= bytes.len() {
            break;
        }
        offsets.push(at);
        at += record::claimed_len(&bytes[at..]).unwrap();
    }
    offsets
}

#[tokio::test]
async fn a_torn_tail_is_cut_off_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for i in 0..5u8 {
            log.append(vec![record("s", None, &[i; 100])])
                .await
                .unwrap();
        }
    }
    let path = only_segment(dir.path());
    let len = fs::metadata(&path).unwrap().len();
    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(len - 37).unwrap(); // the last record loses its end
    drop(file);
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    let log = open(dir.path());
    assert_eq!(log.head(), 4, "the torn record is gone, the rest is intact");
    let appended = log
        .append(vec![record("s", Some(4), b"after")])
        .await
        .unwrap();
    assert_eq!(appended[0].position, 5);
    drop(log);
    assert!(verify(dir.path()).unwrap().problems.is_empty());
}

#[tokio::test]
async fn a_flipped_byte_in_the_middle_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for i in 0..5u8 {
            log.append(vec![record("s", None, &[i; 100])])
                .await
                .unwrap();
        }
    }
    let path = only_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let err = SegmentLog::open(dir.path())
        .err()
        .expect("must refuse to open");
    let message = err.to_string();
    assert!(
        message.contains("00000001.seg") && message.contains("offset"),
        "{message}"
    );
    let err = verify(dir.path()).expect_err("verify reports it");
    assert!(err.to_string().contains("offset"), "{err}");
}

/// A log of `n` records in one segment, written and closed; the segment's
/// path and each record's offset in it.
async fn written_log(dir: &Path, n: usize) -> (PathBuf, Vec<usize>) {
    {
        let log = open(dir);
        for i in 0..n {
            let batch = vec![record(&format!("s{}", i % 7), None, &[i as u8; 60])];
            log.append(batch).await.unwrap();
        }
    }
    let path = only_segment(dir);
    let bytes = fs::read(&path).unwrap();
    let offsets = record_offsets(&bytes);
    assert_eq!(offsets.len(), n);
    (path, offsets)
}

/// Damages record 40 of 300 with `damage` (given its bytes) and checks that
/// neither the start nor `verify` takes it for a torn tail: both refuse,
/// naming the file and the record's offset, and the segment is left as it
/// was (nothing acknowledged after it is cut off).
async fn refuses_damage_to_a_middle_record(damage: impl Fn(&mut [u8])) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = written_log(dir.path(), 300).await;
    let mut bytes = fs::read(&path).unwrap();
    let at = offsets[39];
    damage(&mut bytes[at..offsets[40]]);
    fs::write(&path, &bytes).unwrap();
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    let message = SegmentLog::open(dir.path())
        .err()
        .expect("must refuse to open")
        .to_string();
    assert!(
        message.contains("00000001.seg") && message.contains(&format!("offset {at}")),
        "{message}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut off");
    let err = verify(dir.path())
        .expect_err("verify refuses it too")
        .to_string();
    assert!(err.contains(&format!("offset {at}")), "{err}");
    message
}

#[tokio::test]
async fn a_damaged_magic_in_the_middle_is_not_a_torn_tail() {
    let message = refuses_damage_to_a_middle_record(|r| r[1] ^= 0x20).await;
    assert!(
        message.contains("bad magic") && message.contains("position 41"),
        "{message}"
    );
}

#[tokio::test]
async fn a_damaged_format_version_in_the_middle_is_not_a_torn_tail() {
    let message = refuses_damage_to_a_middle_record(|r| r[4] = 0).await;
    assert!(message.contains("version 0"), "{message}");
}

#[tokio::test]
async fn a_damaged_length_in_the_middle_is_not_a_torn_tail() {
    // A length past the end of the file, and one inside it.
    refuses_damage_to_a_middle_record(|r| r[5] = 0x7f).await;
    let message = refuses_damage_to_a_middle_record(|r| r[8] ^= 0x10).await;
    assert!(message.contains("follows at offset"), "{message}");
}

#[tokio::test]
async fn a_damaged_payload_byte_in_the_middle_is_not_a_torn_tail() {
    let message = refuses_damage_to_a_middle_record(|r| {
        let i = r.len() - 50;
        r[i] ^= 0x01;
    })
    .await;
    assert!(message.contains("CRC mismatch"), "{message}");
}

#[tokio::test]
async fn a_record_of_a_newer_format_is_refused_never_cut() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = written_log(dir.path(), 50).await;
    let mut bytes = fs::read(&path).unwrap();
    // The last record, as a newer OpenPTL would write it: even at the tail
    // it is not a torn write (an upgrade then a downgrade must not truncate).
    bytes[offsets[49] + 4] = record::MARK_VERSION + 1;
    fs::write(&path, &bytes).unwrap();
    let message = SegmentLog::open(dir.path())
        .err()
        .expect("must refuse to open")
        .to_string();
    assert!(message.contains("newer OpenPTL"), "{message}");
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut off");
    let err = verify(dir.path())
        .expect_err("verify refuses it too")
        .to_string();
    assert!(err.contains("newer OpenPTL"), "{err}");
}

#[tokio::test]
async fn a_torn_last_record_and_trailing_zeros_or_garbage_are_cut_off() {
    // A last record written in part, then zeros (space the file system
    // allocated but never wrote), or garbage: nothing valid follows.
    // The bytes of a newer record's header inside what follows (a payload
    // may hold anything) do not make the torn record a newer one.
    for tail in [
        &[][..],
        &[0u8; 4096][..],
        b"OPTL\x01\x00\x00\x00garbage",
        b"note: OPTL\x03\x00\x00\x01\x00",
        b"note: OPTL\x02\x00\x00\x00\x15",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (path, offsets) = written_log(dir.path(), 100).await;
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(offsets[99] + 30);
        bytes.extend_from_slice(tail);
        fs::write(&path, &bytes).unwrap();
        // A torn write was never acknowledged, so never indexed; this record
        // was written whole and indexed, so its index goes too.
        fs::remove_dir_all(dir.path().join("index")).unwrap();
        assert!(
            verify(dir.path()).is_ok(),
            "verify leaves a torn tail to the start"
        );
        let log = open(dir.path());
        assert_eq!(log.head(), 99, "only the torn record is gone");
        assert_eq!(fs::metadata(&path).unwrap().len(), offsets[99] as u64);
        let appended = log.append(vec![record("s", None, b"after")]).await.unwrap();
        assert_eq!(appended[0].position, 100);
    }
}

#[tokio::test]
async fn concurrent_appends_are_grouped_and_all_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(open(dir.path()));
    let mut tasks = Vec::new();
    for c in 0..16 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u8 {
                log.append(vec![record(&format!("c{c}"), None, &[i])])
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(log.head(), 320);
    for c in 0..16 {
        let stream = log.read_stream(&format!("c{c}")).await.unwrap();
        assert_eq!(
            stream.iter().map(|r| r.payload[0]).collect::<Vec<_>>(),
            (0..20).collect::<Vec<u8>>()
        );
    }
}

/// Why opening the log in `dir` is refused (it must be).
fn open_refused(dir: &Path) -> String {
    SegmentLog::open(dir)
        .err()
        .expect("must refuse to open")
        .to_string()
}

/// The index holds only records synced and answered, so a damaged last
/// record it has seen is damage, however much it looks like a torn write:
/// the start refuses and cuts nothing (it once cut it, and rebuilt the
/// index to match).
#[tokio::test]
async fn a_damaged_last_record_the_index_has_seen_is_not_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = written_log(dir.path(), 50).await;
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let message = open_refused(dir.path());
    assert!(
        message.contains(&format!("offset {}", offsets[49]))
            && message.contains("up to position 50 were acknowledged"),
        "{message}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut off");
}

/// Segments that end before what the index has seen lost acknowledged
/// records (a last segment deleted): the start refuses rather than append
/// new records at positions already answered.
#[tokio::test]
async fn a_missing_last_segment_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SegmentLog::open_with_segment_size(dir.path(), 2048).unwrap();
        for i in 0..60u8 {
            log.append(vec![record("s", None, &[i; 150])])
                .await
                .unwrap();
        }
        wait_until_indexed(&log, 60);
    }
    let segments = list_segments(&dir.path().join("segments")).unwrap();
    assert!(segments.len() > 2, "several segments");
    fs::remove_file(&segments.last().unwrap().1).unwrap();
    let message = SegmentLog::open_with_segment_size(dir.path(), 2048)
        .err()
        .expect("must refuse to open")
        .to_string();
    assert!(
        message.contains("a segment file is missing") && message.contains("position 60"),
        "{message}"
    );
    // Put back on purpose (say, an older copy): rebuilding the index opens it.
    rebuild_index(dir.path()).unwrap();
    assert!(
        SegmentLog::open_with_segment_size(dir.path(), 2048)
            .unwrap()
            .head()
            < 60
    );
}

/// Damage followed by records of a newer format version (an upgrade, then
/// a downgrade) is damage in the middle of the log: nothing is cut off,
/// although this binary cannot check the newer records' CRCs.
#[tokio::test]
async fn damage_before_records_of_a_newer_format_is_not_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let (path, offsets) = written_log(dir.path(), 50).await;
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    let mut bytes = fs::read(&path).unwrap();
    bytes[offsets[39] + 60] ^= 0x01;
    for at in &offsets[40..] {
        bytes[at + 4] = record::MARK_VERSION + 1;
    }
    fs::write(&path, &bytes).unwrap();
    let message = open_refused(dir.path());
    assert!(
        message.contains(&format!("offset {}", offsets[39]))
            && message.contains("newer format version"),
        "{message}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut off");
}

/// A replay is told from a new event by reading the stored one back; a
/// read that fails refuses the append (it was once taken for "not stored",
/// and the same event id was stored twice).
#[tokio::test]
async fn an_event_id_that_cannot_be_looked_up_refuses_the_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let r = record("s", None, b"once");
    log.append(vec![r.clone()]).await.unwrap();
    wait_until_indexed(&log, 1);
    // The segment's records cannot be read any more.
    log.shared
        .files
        .lock()
        .unwrap()
        .insert(1, Arc::new(File::open("/dev/null").unwrap()));
    assert!(matches!(
        log.append(vec![r.clone()]).await,
        Err(LogError::Storage(_))
    ));
    assert_eq!(log.head(), 1, "nothing was stored");
}

/// Fields the record format cannot hold are refused before anything is
/// written (a 70,000-byte actor once wrapped its 2-byte length: answered,
/// then unreadable; a 64 MiB payload was cut at the next start).
#[tokio::test]
async fn a_record_the_format_cannot_hold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut long_actor = record("s", None, b"x");
    long_actor.actor = "a".repeat(70_000);
    let mut huge = record("s", None, b"");
    huge.payload = vec![0; record::MAX_RECORD];
    for r in [long_actor, huge] {
        let refused = log.append(vec![record("s", None, b"ok"), r]).await;
        assert!(matches!(refused, Err(LogError::Storage(_))), "{refused:?}");
    }
    assert_eq!(log.head(), 0, "nothing of either batch was stored");
    drop(log);
    assert_eq!(open(dir.path()).head(), 0);
}

#[tokio::test]
async fn reads_and_recovery_cross_segment_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SegmentLog::open_with_segment_size(dir.path(), 4096).unwrap();
        for i in 0..120u8 {
            let batch = vec![
                record(&format!("s{}", i % 7), None, &[i; 150]),
                record("big", None, &[i; 90]),
            ];
            log.append(batch).await.unwrap();
        }
    }
    assert!(
        list_segments(&dir.path().join("segments")).unwrap().len() > 10,
        "many small segments"
    );
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    let log = SegmentLog::open_with_segment_size(dir.path(), 4096).unwrap();
    assert_eq!(log.head(), 240);
    for from in [1u64, 2, 17, 239, 240] {
        let page = log.read_all(from, 50).await.unwrap();
        let expected: Vec<u64> = (from..=(from + 49).min(240)).collect();
        assert_eq!(
            page.iter().map(|r| r.position).collect::<Vec<_>>(),
            expected,
            "from {from}"
        );
    }
    assert_eq!(log.read_all(1, 1000).await.unwrap().len(), 240);
    assert_eq!(log.read_stream("big").await.unwrap().len(), 120);
    drop(log);
    let report = verify(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, 240);
}

/// Damage in a sealed segment (not the last) refuses the start, whether it
/// breaks a CRC or (CRC recomputed) only the hash chain into the next segment.
#[tokio::test]
async fn damage_in_an_earlier_segment_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = SegmentLog::open_with_segment_size(dir.path(), 4096).unwrap();
        for i in 0..60u8 {
            log.append(vec![record(&format!("s{}", i % 5), None, &[i; 150])])
                .await
                .unwrap();
        }
    }
    let segments = list_segments(&dir.path().join("segments")).unwrap();
    assert!(segments.len() > 3, "several segments");
    let (_, second) = &segments[1];
    let original = fs::read(second).unwrap();
    let records = record_offsets(&original);
    let (first, first_end) = (
        records[0],
        records[0] + record::claimed_len(&original[records[0]..]).unwrap(),
    );

    // A flipped payload byte in the first record of the second segment.
    let mut flipped = original.clone();
    flipped[first_end - 60] ^= 0x01;
    fs::write(second, &flipped).unwrap();
    match SegmentLog::open(dir.path()) {
        Err(OpenError::Corrupt { file, offset, .. }) => {
            assert!(file.ends_with(&segment_name(2)), "{file}");
            assert_eq!(offset, first as u64);
        }
        other => panic!("expected corruption, got {:?}", other.err()),
    }

    // The same change with its CRC made good: only the chain can tell. The
    // start-up scan leaves the chain inside sealed segments to the
    // background check, which stops appends and marks the data directory.
    let crc = crc32c::crc32c(&flipped[first..first_end - 4]);
    flipped[first_end - 4..first_end].copy_from_slice(&crc.to_be_bytes());
    fs::write(second, &flipped).unwrap();
    {
        let log = open(dir.path());
        let damage = wait_for_damage(&log);
        assert!(
            damage.contains(&segment_name(2))
                && damage.contains(&format!("offset {}", records[1]))
                && damage.contains("hash chain"),
            "{damage}"
        );
        let refused = log.append(vec![record("s0", None, b"x")]).await;
        assert!(
            matches!(&refused, Err(LogError::Storage(m)) if m.to_string().contains("damaged")),
            "{refused:?}"
        );
    }
    // Every later start refuses, naming the same place.
    match SegmentLog::open(dir.path()) {
        Err(OpenError::Corrupt {
            file,
            problem,
            offset,
        }) => {
            assert!(file.ends_with(&segment_name(2)), "{file}");
            assert!(problem.contains("hash chain"), "{problem}");
            assert_eq!(offset, records[1] as u64);
        }
        other => panic!("expected a broken chain, got {:?}", other.err()),
    }
    assert!(!verify(dir.path()).is_ok_and(|r| r.problems.is_empty()));
    assert!(dir.path().join(DAMAGED).exists());
    // Restored from a backup: `verify` finds the log whole and lifts the mark.
    fs::write(second, &original).unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.damage_mark_cleared);

    // The last record of a segment altered (CRC made good) breaks the link
    // to the next segment's first record: checked at start-up.
    let last = *records.last().unwrap();
    let mut altered = original.clone();
    altered[original.len() - 60] ^= 0x01;
    let crc = crc32c::crc32c(&altered[last..original.len() - 4]);
    let n = altered.len();
    altered[n - 4..].copy_from_slice(&crc.to_be_bytes());
    fs::write(second, &altered).unwrap();
    match SegmentLog::open(dir.path()) {
        Err(OpenError::Corrupt {
            file,
            offset,
            problem,
        }) => {
            assert!(file.ends_with(&segment_name(3)), "{file}");
            assert_eq!(offset, 0);
            assert!(problem.contains("hash chain"), "{problem}");
        }
        other => panic!("expected a broken link, got {:?}", other.err()),
    }
    fs::write(second, &original).unwrap();
    assert_eq!(open(dir.path()).head(), 60);
}

/// A small, valid segment file's bytes (written once per test process).
fn sample_segment() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let log = open(dir.path());
            for i in 0..12u8 {
                log.append(vec![record(&format!("s{}", i % 3), None, &[i; 40])])
                    .await
                    .unwrap();
            }
        });
        fs::read(only_segment(dir.path())).unwrap()
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]

    /// Fuzz target for the segment reader: any damage (flipped bytes, cut
    /// tails, garbage appended) is either read, cut as a torn tail, or
    /// refused with an error; the reader never panics and never yields a
    /// record that fails its checksum.
    #[test]
    fn the_segment_reader_never_panics_on_damage(
        flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 1u8..=255), 0..4),
        cut in proptest::option::of(proptest::prelude::any::<proptest::sample::Index>()),
        garbage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
    ) {
        let mut bytes = sample_segment().to_vec();
        for (at, xor) in &flips {
            let i = at.index(bytes.len());
            bytes[i] ^= xor;
        }
        if let Some(cut) = cut {
            let n = cut.index(bytes.len() + 1);
            bytes.truncate(n);
        }
        bytes.extend_from_slice(&garbage);
        let dir = tempfile::tempdir().unwrap();
        let segments = dir.path().join("segments");
        fs::create_dir_all(&segments).unwrap();
        fs::write(segments.join(segment_name(1)), &bytes).unwrap();
        let mut seen = 0u64;
        let outcome = scan(&segments, false, |found| {
            seen += 1;
            assert_eq!(found.record.position, seen, "positions stay contiguous");
        });
        if let Ok(end) = outcome {
            proptest::prop_assert_eq!(end.head, seen);
            // Nothing valid was taken for a torn tail: no record with a
            // good CRC and a later position is left anywhere after the end.
            for k in 0..bytes.len() {
                if let Ok(valid) = record::check(&bytes[k..]) {
                    proptest::prop_assert!(valid.position <= end.head, "record {} at {k} dropped", valid.position);
                }
            }
        }
    }
}

#[test]
fn a_held_sled_lock_is_told_from_damage_and_waited_out() {
    let dir = tempfile::tempdir().unwrap();
    let held = open_index(dir.path()).unwrap();
    let err = open_index(dir.path()).unwrap_err();
    assert!(lock_held(&err), "{err}");
    assert!(!lock_held(&sled::Error::Unsupported("x".into())));
    drop(held);
    // Let go, it opens again (waiting out sled's own threads if need be).
    open_index_patiently(dir.path()).unwrap();
}

#[tokio::test]
async fn an_index_of_the_first_layout_is_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let log = open(dir.path());
        for i in 0..12u8 {
            let r = record(&format!("s{}", i % 3), None, &[i]);
            ids.push(r.event_id);
            log.append(vec![r]).await.unwrap();
        }
    }
    // The first layout: one key per stream version and per event id, a
    // mark of the last position indexed, and no layout mark.
    {
        let old = sled::open(dir.path().join("index")).unwrap();
        old.clear().unwrap();
        let mut key = vec![b's', 0, 2];
        key.extend_from_slice(b"s0");
        key.extend_from_slice(&1u64.to_be_bytes());
        old.insert(key, &1u64.to_be_bytes()).unwrap();
        old.insert(b"m/indexed", &12u64.to_be_bytes()).unwrap();
        old.flush().unwrap();
    }
    let report = verify(dir.path()).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("earlier layout")),
        "{:?}",
        report.problems
    );
    let log = open(dir.path());
    wait_until_indexed(&log, 12);
    assert_eq!(log.read_stream("s2").await.unwrap().len(), 4);
    assert_eq!(log.find_event(ids[10]).await.unwrap().unwrap().position, 11);
    let next = log.append(vec![record("s0", Some(4), b"x")]).await.unwrap();
    assert_eq!((next[0].position, next[0].version), (13, 5));
    drop(log);
    assert_eq!(verify(dir.path()).unwrap().problems, Vec::<String>::new());
}

#[tokio::test]
async fn visits_read_in_place_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = SegmentLog::open_with_segment_size(dir.path(), 600).unwrap();
    for i in 0..30u8 {
        log.append(vec![record(&format!("s{}", i % 4), None, &[i])])
            .await
            .unwrap();
    }
    assert!(fs::read_dir(dir.path().join("segments")).unwrap().count() > 3);
    let stored = log.read_all(1, 100).await.unwrap();
    let reader = log.in_place().unwrap().unwrap();
    for from in [1, 2, 7, 30] {
        let mut seen = Vec::new();
        reader
            .visit(from, 30, &|_| true, &mut |r| seen.push(r.to_stored()))
            .unwrap();
        assert_eq!(seen, stored[from as usize - 1..]);
    }
    let every: Vec<u64> = (1..=30).rev().collect();
    let mut seen = Vec::new();
    reader
        .visit_positions(&every, &mut |r| seen.push(r.to_stored()))
        .unwrap();
    seen.reverse();
    assert_eq!(seen, stored);
}

/// A log in `dir` of small segments (64 KiB) holding `records` records of
/// 900 bytes, appended one at a time to `streams` streams in turn.
async fn spread_over_segments(dir: &Path, records: u16, streams: u16) -> SegmentLog {
    let log = SegmentLog::open_with_segment_size(dir, 64 << 10).unwrap();
    for i in 0..records {
        log.append(vec![record(&format!("s{}", i % streams), None, &[7; 900])])
            .await
            .unwrap();
    }
    log
}

/// The runs a past view asks the kernel for (`will_read`) cover every
/// record asked for, join only nearby records of one segment, and pass
/// over positions the log does not hold.
#[tokio::test]
async fn records_about_to_be_read_are_asked_for_in_runs() {
    let dir = tempfile::tempdir().unwrap();
    let log = spread_over_segments(dir.path(), 400, 9).await;
    let segments = fs::read_dir(dir.path().join("segments")).unwrap().count();
    assert!(segments > 3, "{segments} segments");
    let mapped = Mapped::new(&log.shared, log.head()).unwrap();
    let locate = |p: u64| log.shared.location(p).unwrap();
    let runs_of = |positions: &[u64]| mapped.runs(positions);

    // Neighbours are one run, from the first's start to the last's end.
    let (segment, first) = locate(1);
    assert_eq!(runs_of(&[3, 1, 2]), [(segment, first, locate(4).1)]);
    // Records further apart than RUN_GAP in one segment are two runs.
    let far = (2..=log.head())
        .find(|p| {
            let (s, o) = locate(*p);
            s == segment && o > locate(2).1 + RUN_GAP
        })
        .expect("a record far from the first in its segment");
    assert_eq!(runs_of(&[1, far]).len(), 2);
    // Positions not held are passed over.
    assert_eq!(runs_of(&[0, log.head() + 1]), []);

    // Every record of a spread of positions lies inside a run (the last
    // of a segment up to TAIL_GUESS past its start), and runs are
    // ordered and apart.
    let wanted: Vec<u64> = (1..=log.head())
        .filter(|p| p % 7 == 3 || p % 11 == 0)
        .collect();
    let runs = runs_of(&wanted);
    for w in runs.windows(2) {
        let ((s1, _, e1), (s2, b2, _)) = (w[0], w[1]);
        assert!(s1 < s2 || (s1 == s2 && b2 > e1 + RUN_GAP), "{runs:?}");
    }
    for p in &wanted {
        let (s, start) = locate(*p);
        let end = match log.shared.location(p + 1) {
            Ok((next, o)) if next == s => o,
            _ => start + TAIL_GUESS,
        };
        assert!(
            runs.iter()
                .any(|(rs, b, e)| *rs == s && *b <= start && end <= *e),
            "position {p} ({s}, {start}..{end}) outside {runs:?}"
        );
    }
    // Asking is only a hint: the records read back the same after it.
    let reader = log.in_place().unwrap().unwrap();
    reader.will_read(&mut wanted.iter().copied().chain([0, 10_000]));
    let mut seen = Vec::new();
    reader
        .visit_positions(&wanted, &mut |r| seen.push(r.position))
        .unwrap();
    assert_eq!(seen, wanted);
    // Just read through the mappings, the pages are in memory: nothing
    // need be asked. (Checked after the read, not after the writes: on a
    // busy machine the kernel may drop written pages before they are
    // read.)
    let mut touched = 0u64;
    mapped
        .walk(1, log.head(), &mut |_, _, bytes, head| {
            touched += u64::from(bytes[0]) + head.position;
            Ok(())
        })
        .unwrap();
    assert!(touched > 0);
    assert!(mapped.sample_in_memory(&wanted));
}

/// The kernel's flags of the mapping that starts at `address`
/// (`/proc/self/smaps`' `VmFlags`).
fn vm_flags(address: usize) -> Option<String> {
    let smaps = fs::read_to_string("/proc/self/smaps").ok()?;
    let start = format!("{address:x}-");
    let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
    lines.next()?;
    lines
        .find_map(|l| l.strip_prefix("VmFlags:"))
        .map(str::to_string)
}

/// Once a reader says which records it will read, its mappings are read
/// here and there (`MADV_RANDOM`: a page fault reads its page alone, not
/// the disk's read-ahead around it); before, they are not.
#[tokio::test]
async fn a_reader_told_what_it_will_read_reads_its_mappings_randomly() {
    let dir = tempfile::tempdir().unwrap();
    let log = spread_over_segments(dir.path(), 200, 5).await;
    let mapped = Mapped::new(&log.shared, log.head()).unwrap();
    let addresses = mapped.addresses();
    assert!(addresses.len() > 1, "{} mappings", addresses.len());
    let random = |address: &usize| {
        let flags = vm_flags(*address).expect("the mapping is listed");
        flags.split_whitespace().any(|f| f == "rr")
    };
    assert!(!addresses.iter().any(random), "random before it was told");
    mapped.will_read(&mut [1, 2, 150].into_iter());
    assert!(addresses.iter().all(random), "every mapping read randomly");
}

#[test]
fn locations_find_each_record_across_segments() {
    let mut l = Locations::default();
    assert_eq!(l.get(1), None);
    l.push(1, 0);
    l.push(1, 200);
    l.push(2, 0);
    l.push(4, 0);
    l.push(4, u64::from(u32::MAX));
    assert_eq!(l.get(0), None);
    assert_eq!(l.get(1), Some((1, 0)));
    assert_eq!(l.get(2), Some((1, 200)));
    assert_eq!(l.get(3), Some((2, 0)));
    assert_eq!(l.get(4), Some((4, 0)));
    assert_eq!(l.get(5), Some((4, u64::from(u32::MAX))));
    assert_eq!(l.get(6), None);
}

proptest::proptest! {
    /// Every location pushed reads back, whatever the sizes of the records
    /// (blocks of offsets kept as distances, some too far kept whole) and
    /// wherever a segment starts.
    #[test]
    fn locations_read_back_as_pushed(
        records in proptest::collection::vec((0u32..3, 1u64..100_000), 0..200),
    ) {
        let mut l = Locations::default();
        let mut pushed = Vec::new();
        let (mut segment, mut offset) = (1u32, 0u64);
        for (next_segment, size) in records {
            if next_segment == 0 {
                segment += 1;
                offset = 0;
            }
            l.push(segment, offset);
            pushed.push((segment, offset));
            offset += size;
        }
        for (i, at) in pushed.iter().enumerate() {
            proptest::prop_assert_eq!(l.get(i as u64 + 1), Some(*at));
        }
        proptest::prop_assert_eq!(l.get(pushed.len() as u64 + 1), None);
    }
}

#[tokio::test]
async fn a_backup_beside_the_open_log_copies_only_what_is_new_and_restores_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (source, copy, restored) = (
        dir.path().join("data"),
        dir.path().join("backup"),
        dir.path().join("restored"),
    );
    let log = SegmentLog::open_with_segment_size(&source, 4096).unwrap();
    for i in 0..120u8 {
        log.append(vec![record(&format!("s{}", i % 5), None, &[i; 80])])
            .await
            .unwrap();
    }
    // Taken while the log is open (its lock held), as beside a running service.
    let first = backup(&source, &copy, &mut |_| {}).unwrap();
    assert_eq!(first.position, 120);
    assert_eq!(first.segments_copied, first.segments);
    let mut wrote = Vec::new();
    for i in 0..30u8 {
        wrote.push(
            log.append(vec![record("late", None, &[i; 80])])
                .await
                .unwrap()[0]
                .event_id,
        );
    }
    let second = backup(&source, &copy, &mut |_| {}).unwrap();
    assert_eq!(second.position, 150);
    assert!(
        second.segments_copied < second.segments && second.bytes_copied < first.bytes_copied,
        "only the new bytes: {second:?}"
    );
    // A copy whose tail no longer matches its segment (the service cut back
    // a write the earlier backup had copied, or the log is another history)
    // is refused, and left exactly as it was.
    let last = list_segments(&copy.join("segments"))
        .unwrap()
        .pop()
        .unwrap()
        .1;
    let original = fs::read(&last).unwrap();
    let mut bytes = original.clone();
    let end = bytes.len() - 10;
    bytes[end] ^= 0xff;
    fs::write(&last, &bytes).unwrap();
    let refused = backup(&source, &copy, &mut |_| {}).expect_err("not a prefix");
    assert!(
        refused.to_string().contains("back up into a new directory"),
        "{refused}"
    );
    assert_eq!(
        fs::read(&last).unwrap(),
        bytes,
        "the backup was left as it was"
    );
    assert!(copy.join(MANIFEST).exists());
    fs::write(&last, &original).unwrap();
    let third = backup(&source, &copy, &mut |_| {}).unwrap();
    assert_eq!(
        (third.position, third.head_hash),
        (second.position, second.head_hash)
    );
    drop(log);
    let report = restore(&copy, &restored).unwrap();
    assert_eq!(report.position, 150);
    assert!(verify(&restored).unwrap().problems.is_empty());
    assert!(restore(&copy, &restored).is_err(), "never over a log");
    let back = open(&restored);
    let all = back.read_all(1, 1000).await.unwrap();
    let original = open(&source).read_all(1, 1000).await.unwrap();
    assert_eq!(all, original);
    assert!(wrote.iter().all(|id| all.iter().any(|r| r.event_id == *id)));
    // Another log's backup directory is refused.
    let other = dir.path().join("other");
    let other_log = open(&other);
    other_log
        .append(vec![record("x", None, b"x")])
        .await
        .unwrap();
    drop(other_log);
    assert!(backup(&other, &copy, &mut |_| {}).is_err());
}

/// A log restored from an older backup, then appended to, and backed up
/// into the directory of the newer backup: refused, the newer backup left
/// whole (it was once cut back to the older history, or destroyed half-way
/// across two segments). And only a finished backup is restored.
#[tokio::test]
async fn a_newer_backup_is_never_overwritten_by_an_older_history() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let log = SegmentLog::open_with_segment_size(&path("data"), 4096).unwrap();
    for i in 0..40u8 {
        log.append(vec![record("s", None, &[i; 80])]).await.unwrap();
    }
    backup(&path("data"), &path("older"), &mut |_| {}).unwrap();
    for i in 0..60u8 {
        log.append(vec![record("t", None, &[i; 80])]).await.unwrap();
    }
    drop(log);
    let newer = backup(&path("data"), &path("newer"), &mut |_| {}).unwrap();
    assert_eq!(newer.position, 100);
    restore(&path("older"), &path("restored")).unwrap();
    let restored = SegmentLog::open_with_segment_size(&path("restored"), 4096).unwrap();
    restored
        .append(vec![record("after", None, b"forked")])
        .await
        .unwrap();
    drop(restored);
    let before: Vec<_> = list_segments(&path("newer").join("segments"))
        .unwrap()
        .into_iter()
        .map(|(_, p)| fs::read(p).unwrap())
        .collect();
    let refused = backup(&path("restored"), &path("newer"), &mut |_| {})
        .expect_err("an older history over a newer backup");
    assert!(
        refused.to_string().contains("not the start of the log"),
        "{refused}"
    );
    let after: Vec<_> = list_segments(&path("newer").join("segments"))
        .unwrap()
        .into_iter()
        .map(|(_, p)| fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after, "the newer backup is whole");
    assert_eq!(
        restore(&path("newer"), &path("again")).unwrap().position,
        100
    );
    // A directory without a manifest is not a finished backup.
    fs::remove_file(path("older").join(MANIFEST)).unwrap();
    let refused = restore(&path("older"), &path("never")).expect_err("no manifest");
    assert!(
        refused.to_string().contains("not a finished backup"),
        "{refused}"
    );
}

#[tokio::test]
async fn an_index_of_a_newer_layout_refuses_the_open_until_rebuilt_on_purpose() {
    let dir = tempfile::tempdir().unwrap();
    {
        let log = open(dir.path());
        for i in 0..5u8 {
            log.append(vec![record("s", None, &[i])]).await.unwrap();
        }
    }
    {
        let newer = sled::open(dir.path().join("index")).unwrap();
        newer
            .insert(b"m/layout", &(index::LAYOUT + 1).to_be_bytes())
            .unwrap();
        newer.flush().unwrap();
    }
    let refused = SegmentLog::open(dir.path()).err().expect("refused");
    assert!(matches!(refused, OpenError::Newer(_)), "{refused}");
    assert!(refused.to_string().contains("newer OpenPTL"), "{refused}");
    let report = verify(dir.path()).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("newer OpenPTL")),
        "{:?}",
        report.problems
    );
    // The segments are untouched; a deliberate rebuild makes it this layout.
    assert_eq!(rebuild_index(dir.path()).unwrap(), 5);
    let log = open(dir.path());
    assert_eq!(log.read_stream("s").await.unwrap().len(), 5);
}

/// A log of a batch of two records (A) then a batch of three (B), closed;
/// B's records (to send again) and the offsets of every record. Their
/// bytes are those of one group commit holding A then B: a write is its
/// batches one after the other, each of more than one record begun with
/// its mark.
async fn two_batches(dir: &Path) -> (Vec<NewRecord>, Vec<usize>) {
    let b: Vec<NewRecord> = (0..3).map(|i| record("b", None, &[i; 80])).collect();
    {
        let log = open(dir);
        log.append(vec![record("a", None, b"a1"), record("a", None, b"a2")])
            .await
            .unwrap();
        log.append(b.clone()).await.unwrap();
    }
    let offsets = record_offsets(&fs::read(only_segment(dir)).unwrap());
    assert_eq!(offsets.len(), 5);
    (b, offsets)
}

/// Decision 189: a crash in the middle of a write can leave some of a
/// batch's records whole on disk. The batch was not answered, and a batch
/// is atomic (SPEC 4.1): the start cuts it off from its mark, so none of B
/// is kept, whether the crash tore B's last record or left it unwritten,
/// and A, whole before it, stays; B sent again is stored once, where it
/// would have been.
#[tokio::test]
async fn a_batch_a_crash_cut_short_leaves_none_of_its_records() {
    for torn in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (b, offsets) = two_batches(dir.path()).await;
        let path = only_segment(dir.path());
        let mut bytes = fs::read(&path).unwrap();
        // B1 and B2 whole; B3 in part, or not at all.
        bytes.truncate(if torn { offsets[4] + 40 } else { offsets[4] });
        fs::write(&path, &bytes).unwrap();
        // Never answered, so never indexed.
        fs::remove_dir_all(dir.path().join("index")).unwrap();
        let report = verify(dir.path()).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!(report.records, 2, "verify counts no record of B");

        let log = open(dir.path());
        assert_eq!(log.head(), 2, "torn: {torn}");
        assert!(log.read_stream("b").await.unwrap().is_empty());
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            (offsets[2] - record::MARK_LEN) as u64,
            "the segment ends where B began"
        );
        let again = log.append(b.clone()).await.unwrap();
        let positions: Vec<u64> = again.iter().map(|a| a.position).collect();
        assert_eq!(positions, [3, 4, 5]);
        let replayed = log.append(b.clone()).await.unwrap();
        assert!(replayed.iter().all(|a| a.replayed), "a replay");
        assert_eq!(
            replayed.iter().map(|a| a.position).collect::<Vec<_>>(),
            positions
        );
        drop(log);
        assert_eq!(open(dir.path()).head(), 5);
        assert!(verify(dir.path()).unwrap().problems.is_empty());
    }
}

/// A batch the index has seen was answered: cutting it would lose
/// acknowledged records, so the start refuses (decision 176) rather than
/// take its missing end for a crash.
#[tokio::test]
async fn a_batch_the_index_has_seen_is_never_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let (_, offsets) = two_batches(dir.path()).await;
    let path = only_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    bytes.truncate(offsets[4]);
    fs::write(&path, &bytes).unwrap();
    let message = open_refused(dir.path());
    assert!(
        message.contains("never finished")
            && message.contains("up to position 5 were acknowledged"),
        "{message}"
    );
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was cut off");
}

/// A log written before batch marks (every record whole, none marked)
/// opens and reads whole, takes new batches (marked) after its records,
/// and verifies.
#[tokio::test]
async fn a_log_written_before_batch_marks_reads_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_, offsets) = two_batches(dir.path()).await;
    let path = only_segment(dir.path());
    let bytes = fs::read(&path).unwrap();
    let mut unmarked = Vec::new();
    for at in &offsets {
        let len = record::claimed_len(&bytes[*at..]).unwrap();
        unmarked.extend_from_slice(&bytes[*at..at + len]);
    }
    assert_eq!(
        unmarked.len(),
        bytes.len() - 2 * record::MARK_LEN,
        "two marked batches"
    );
    fs::write(&path, &unmarked).unwrap();
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    {
        let log = open(dir.path());
        assert_eq!(log.head(), 5);
        assert_eq!(log.read_stream("b").await.unwrap().len(), 3);
        log.append(vec![record("c", None, b"c1"), record("c", None, b"c2")])
            .await
            .unwrap();
        assert_eq!(log.read_all(1, 100).await.unwrap().len(), 7);
    }
    let log = open(dir.path());
    assert_eq!(log.head(), 7);
    let all = log.read_all(1, 100).await.unwrap();
    let positions: Vec<u64> = all.iter().map(|r| r.position).collect();
    assert_eq!(positions, (1..=7).collect::<Vec<u64>>());
    drop(log);
    let report = verify(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.records, 7);
}

/// Damage in the last record of a batch the index has seen refuses the
/// start; `rebuild-index` (the segments taken as they are) then cuts that
/// batch from its mark and keeps every whole batch before it, even one
/// written by the same group commit (found by the durability review: one
/// mark a write cut them all).
#[tokio::test]
async fn rebuilding_the_index_over_a_damaged_batch_keeps_the_batches_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, offsets) = two_batches(dir.path()).await;
    let path = only_segment(dir.path());
    let mut bytes = fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x01;
    fs::write(&path, &bytes).unwrap();
    let message = open_refused(dir.path());
    assert!(message.contains("were acknowledged"), "{message}");
    assert_eq!(rebuild_index(dir.path()).unwrap(), 2);
    let log = open(dir.path());
    assert_eq!(log.head(), 2);
    assert_eq!(log.read_stream("a").await.unwrap().len(), 2);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        (offsets[2] - record::MARK_LEN) as u64
    );
}

/// A note's payload may hold anything, a batch mark's 21 bytes included: a
/// record torn inside such a payload is a torn tail, not damage followed by
/// a later batch (found by the durability review). A mark counts as
/// following only when a record of its batch follows it.
#[tokio::test]
async fn a_mark_inside_a_torn_records_payload_is_not_a_later_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut payload = Vec::new();
    record::encode_mark(1_000_000, &mut payload);
    payload.extend_from_slice(&[b'x'; 200]);
    {
        let log = open(dir.path());
        log.append(vec![record("s", None, b"first")]).await.unwrap();
        log.append(vec![record("s", None, &payload)]).await.unwrap();
    }
    let path = only_segment(dir.path());
    let bytes = fs::read(&path).unwrap();
    let inner = memchr::memmem::find(&bytes[1..], &payload[..record::MARK_LEN]).unwrap() + 1;
    // Torn 50 bytes after the mark in the payload; never answered, so
    // never indexed.
    fs::write(&path, &bytes[..inner + record::MARK_LEN + 50]).unwrap();
    fs::remove_dir_all(dir.path().join("index")).unwrap();
    assert_eq!(open(dir.path()).head(), 1);
}
