//! The behaviour every [`EventLog`] implementation must have, as one suite
//! that each implementation's tests run against a fresh instance.

use std::future::Future;

use uuid::Uuid;

use crate::{EventLog, LogError, NewRecord};

/// A record for stream `stream` with a fresh event id.
pub fn record(stream: &str, expected_version: Option<u64>, payload: &[u8]) -> NewRecord {
    NewRecord {
        stream_id: stream.to_string(),
        event_id: Uuid::new_v4(),
        event_type: "tracking_note_added".to_string(),
        schema_version: 1,
        actor: "suite".to_string(),
        payload: payload.to_vec(),
        expected_version,
    }
}

/// Runs every check, each on a new log from `fresh`.
pub async fn run_all<L, F, Fut>(fresh: F)
where
    L: EventLog,
    F: Fn() -> Fut,
    Fut: Future<Output = L>,
{
    appends_and_reads_back(&fresh().await).await;
    versions_and_positions_have_no_gaps(&fresh().await).await;
    expected_version_conflicts(&fresh().await).await;
    batches_are_atomic(&fresh().await).await;
    identical_event_ids_replay(&fresh().await).await;
    different_content_under_one_event_id_conflicts(&fresh().await).await;
    read_all_pages(&fresh().await).await;
    visits_in_place(&fresh().await).await;
    reads_by_position(&fresh().await).await;
    verbatim_copies_keep_everything(&fresh().await).await;
    head_is_watched(&fresh().await).await;
    chain_head_is_the_hash_of_the_record_at_the_head(&fresh().await).await;
    subscriptions_catch_up_then_follow(std::sync::Arc::new(fresh().await)).await;
}

async fn appends_and_reads_back(log: &impl EventLog) {
    let r = record("s1", Some(0), b"one");
    let out = log.append(vec![r.clone()]).await.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].version, out[0].position, out[0].replayed),
        (1, 1, false)
    );
    let stream = log.read_stream("s1").await.unwrap();
    assert_eq!(stream.len(), 1);
    assert_eq!(stream[0].payload, b"one");
    assert_eq!(stream[0].event_id, r.event_id);
    assert_eq!(stream[0].actor, "suite");
    assert_eq!(
        log.find_event(r.event_id).await.unwrap().unwrap().position,
        1
    );
    assert!(log.find_event(Uuid::new_v4()).await.unwrap().is_none());
    assert!(log.read_stream("nope").await.unwrap().is_empty());
}

async fn reads_by_position(log: &impl EventLog) {
    for (stream, payload) in [("a", b"a1"), ("b", b"b1"), ("a", b"a2")] {
        log.append(vec![record(stream, None, payload)])
            .await
            .unwrap();
    }
    let got = log.read_positions(&[3, 1]).await.unwrap();
    let seen: Vec<(u64, &str, &[u8])> = got
        .iter()
        .map(|r| (r.position, r.stream_id.as_str(), r.payload.as_slice()))
        .collect();
    assert_eq!(seen, [(3, "a", &b"a2"[..]), (1, "a", &b"a1"[..])]);
    assert!(log.read_positions(&[]).await.unwrap().is_empty());
    assert!(matches!(
        log.read_positions(&[4]).await,
        Err(LogError::Storage(_))
    ));
}

async fn verbatim_copies_keep_everything(log: &impl EventLog) {
    let source = crate::MemoryLog::new();
    for i in 0..10u8 {
        source
            .append(vec![record(&format!("s{}", i % 3), None, &[i])])
            .await
            .unwrap();
    }
    let all = source.read_all(1, 100).await.unwrap();
    // A first page that does not start at the head is refused, whole.
    assert!(matches!(
        log.append_verbatim(all[1..4].to_vec()).await,
        Err(LogError::Storage(_))
    ));
    assert_eq!(log.head(), 0);
    for page in all.chunks(4) {
        log.append_verbatim(page.to_vec()).await.unwrap();
    }
    assert_eq!(log.read_all(1, 100).await.unwrap(), all);
    assert_eq!(log.head(), 10);
    // The same records again: their ids are taken.
    let mut again = all[0].clone();
    again.position = 11;
    again.version = 5;
    assert!(matches!(
        log.append_verbatim(vec![again]).await,
        Err(LogError::DuplicateEventId { .. })
    ));
    // Appends go on where the copy ended.
    let next = log.append(vec![record("s0", Some(4), b"x")]).await.unwrap();
    assert_eq!((next[0].position, next[0].version), (11, 5));
}

async fn versions_and_positions_have_no_gaps(log: &impl EventLog) {
    for i in 0..5u64 {
        log.append(vec![record("a", Some(i), b"a"), record("b", None, b"b")])
            .await
            .unwrap();
    }
    let all = log.read_all(1, 100).await.unwrap();
    assert_eq!(all.len(), 10);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.position, i as u64 + 1);
    }
    assert!(
        all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at),
        "recorded_at never goes back"
    );
    let a = log.read_stream("a").await.unwrap();
    assert_eq!(
        a.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(log.head(), 10);
}

async fn expected_version_conflicts(log: &impl EventLog) {
    log.append(vec![record("s", Some(0), b"x")]).await.unwrap();
    let err = log
        .append(vec![record("s", Some(0), b"y")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::VersionConflict {
                expected: 0,
                actual: 1,
                ..
            }
        ),
        "{err:?}"
    );
    let err = log
        .append(vec![record("s", Some(5), b"y")])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            LogError::VersionConflict {
                expected: 5,
                actual: 1,
                ..
            }
        ),
        "{err:?}"
    );
    log.append(vec![record("s", Some(1), b"y")]).await.unwrap();
}

async fn batches_are_atomic(log: &impl EventLog) {
    log.append(vec![record("s", None, b"x")]).await.unwrap();
    let batch = vec![
        record("t", Some(0), b"1"),
        record("t", Some(1), b"2"),
        record("s", Some(0), b"bad"),
    ];
    let err = log.append(batch).await.unwrap_err();
    assert!(
        matches!(err, LogError::VersionConflict { index: 2, .. }),
        "{err:?}"
    );
    assert!(
        log.read_stream("t").await.unwrap().is_empty(),
        "nothing of a failed batch is written"
    );
    assert_eq!(log.head(), 1);
}

async fn identical_event_ids_replay(log: &impl EventLog) {
    let r = record("s", Some(0), b"x");
    let first = log.append(vec![r.clone()]).await.unwrap();
    // A retry, even with a now-stale expected version, returns the original result.
    let again = log.append(vec![r.clone()]).await.unwrap();
    assert!(again[0].replayed);
    assert_eq!(
        (again[0].version, again[0].position),
        (first[0].version, first[0].position)
    );
    assert_eq!(log.head(), 1);
    // The same record twice in one batch is stored once.
    let s = record("u", None, b"y");
    let out = log.append(vec![s.clone(), s.clone()]).await.unwrap();
    assert_eq!(out[0].position, out[1].position);
    assert_eq!(log.head(), 2);
}

async fn different_content_under_one_event_id_conflicts(log: &impl EventLog) {
    let r = record("s", None, b"x");
    log.append(vec![r.clone()]).await.unwrap();
    let changed = NewRecord {
        payload: b"other".to_vec(),
        ..r.clone()
    };
    let err = log
        .append(vec![record("v", None, b"ok"), changed])
        .await
        .unwrap_err();
    assert!(
        matches!(err, LogError::DuplicateEventId { index: 1, .. }),
        "{err:?}"
    );
    let moved = NewRecord {
        stream_id: "elsewhere".into(),
        ..r
    };
    assert!(matches!(
        log.append(vec![moved]).await,
        Err(LogError::DuplicateEventId { .. })
    ));
    assert_eq!(log.head(), 1);
}

async fn read_all_pages(log: &impl EventLog) {
    let batch: Vec<_> = (0..25)
        .map(|i| record(&format!("p{}", i % 3), None, &[i as u8]))
        .collect();
    log.append(batch).await.unwrap();
    let mut from = 1;
    let mut seen = Vec::new();
    loop {
        let page = log.read_all(from, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        from = page.last().unwrap().position + 1;
        seen.extend(page.into_iter().map(|r| r.payload[0]));
    }
    assert_eq!(seen, (0..25u8).collect::<Vec<_>>());
    assert!(log.read_all(26, 10).await.unwrap().is_empty());
}

async fn visits_in_place(log: &impl EventLog) {
    let batch: Vec<_> = (0..25)
        .map(|i| record(&format!("p{}", i % 3), None, &[i as u8]))
        .collect();
    log.append(batch).await.unwrap();
    let stored = log.read_all(1, 100).await.unwrap();
    let Some(reader) = log.in_place() else {
        return; // this log reads with read_all only
    };
    let reader = reader.unwrap();
    // Appended after the reader was made: not covered.
    log.append(vec![record("p0", None, b"late")]).await.unwrap();
    assert_eq!(reader.head(), 25);
    let mut seen = Vec::new();
    reader
        .visit(4, 25, &|_| true, &mut |r| seen.push(r.to_stored()))
        .unwrap();
    assert_eq!(seen, stored[3..]);
    // Only the streams kept.
    let mut kept = Vec::new();
    reader
        .visit(1, 25, &|stream| stream == b"p1", &mut |r| {
            kept.push(r.position)
        })
        .unwrap();
    let p1: Vec<u64> = stored
        .iter()
        .filter(|r| r.stream_id == "p1")
        .map(|r| r.position)
        .collect();
    assert_eq!(kept, p1);
    // Where each stream's records are.
    let mut streams = Vec::new();
    reader
        .visit_streams(4, 25, &mut |position, stream| {
            streams.push((position, String::from_utf8(stream.to_vec()).unwrap()))
        })
        .unwrap();
    let expected: Vec<(u64, String)> = stored[3..]
        .iter()
        .map(|r| (r.position, r.stream_id.clone()))
        .collect();
    assert_eq!(streams, expected);
    // By position, in the order asked.
    let mut by_position = Vec::new();
    reader
        .visit_positions(&[7, 2, 25], &mut |r| by_position.push(r.to_stored()))
        .unwrap();
    assert_eq!(
        by_position,
        vec![stored[6].clone(), stored[1].clone(), stored[24].clone()]
    );
    // Nothing, and errors past what it covers.
    let mut none = 0;
    reader.visit(9, 8, &|_| true, &mut |_| none += 1).unwrap();
    assert_eq!(none, 0);
    assert!(reader.visit(1, 26, &|_| true, &mut |_| {}).is_err());
    assert!(reader.visit_positions(&[26], &mut |_| {}).is_err());
    assert!(reader.visit_positions(&[0], &mut |_| {}).is_err());
}

async fn head_is_watched(log: &impl EventLog) {
    let mut rx = log.watch_head();
    assert_eq!(*rx.borrow_and_update(), 0);
    log.append(vec![record("w", None, b"1"), record("w", None, b"2")])
        .await
        .unwrap();
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow(), 2);
}

async fn chain_head_is_the_hash_of_the_record_at_the_head(log: &impl EventLog) {
    let Some(empty) = log.chain_head().await.unwrap() else {
        return; // this log keeps no chain head
    };
    assert_eq!((empty.position, empty.hash), (0, [0; 32]));
    for i in 0..3u8 {
        log.append(vec![record("c", None, &[i]), record("d", None, &[i])])
            .await
            .unwrap();
        let head = log.chain_head().await.unwrap().unwrap();
        let mut hash = [0u8; 32];
        for r in log.read_all(1, 100).await.unwrap() {
            hash = crate::segment::record_hash(&r, &hash);
        }
        assert_eq!((head.position, head.hash), (log.head(), hash));
    }
}

async fn subscriptions_catch_up_then_follow<L: EventLog>(log: std::sync::Arc<L>) {
    use crate::Subscription;
    for i in 0..5u8 {
        log.append(vec![record("s", None, &[i])]).await.unwrap();
    }
    let dyn_log: std::sync::Arc<dyn EventLog> = log.clone();
    let mut sub = Subscription::from(dyn_log.clone(), 1, 2);
    let mut seen = Vec::new();
    while seen.len() < 5 {
        let batch = sub.next().await.unwrap().unwrap();
        assert!(batch.records.len() <= 2);
        assert_eq!(batch.more, seen.len() + batch.records.len() < 5);
        seen.extend(batch.records.iter().map(|r| r.position));
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5], "catch-up in order, no gaps");
    // Live: an append after the subscriber caught up arrives next.
    let writer = log.clone();
    let appender = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        writer.append(vec![record("s", None, &[9])]).await.unwrap();
    });
    let live = tokio::time::timeout(std::time::Duration::from_secs(5), sub.next())
        .await
        .expect("a live record arrives")
        .unwrap()
        .unwrap();
    assert_eq!(
        live.records.iter().map(|r| r.position).collect::<Vec<_>>(),
        vec![6]
    );
    appender.await.unwrap();
    // Resuming from a checkpoint (position 3 done) gives 4.. with no duplicates.
    let mut resumed = Subscription::from(dyn_log, 4, 100);
    let batch = resumed.next().await.unwrap().unwrap();
    assert_eq!(
        batch.records.iter().map(|r| r.position).collect::<Vec<_>>(),
        vec![4, 5, 6]
    );
    assert!(!batch.more);
}
