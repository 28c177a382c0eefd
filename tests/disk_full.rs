//! A full disk, injected: the data directory (or a part of it) on a small
//! tmpfs that fills up. Nothing acknowledged is lost, nothing refused is
//! kept (also after a restart on a larger disk), and the service goes on
//! serving what it safely can: reads, `/healthz`, `/metrics`, with
//! `/readyz` failing while appends do.
//!
//! Mounting needs root (CI runs as root); elsewhere each test says SKIPPED
//! loudly, and fails under `CI=true`.

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{fresh_dir, request, Server, SmallDisk};
use openptl_log::{suite::record, EventLog, LogError, SegmentLog};

/// Appends batches of 20 records of 2 KiB until one is refused; returns the
/// event ids acknowledged and those of the refused batch.
async fn append_until_refused(log: &SegmentLog) -> (Vec<uuid::Uuid>, Vec<uuid::Uuid>, LogError) {
    let mut acknowledged = Vec::new();
    for n in 0..10_000 {
        let batch: Vec<_> = (0..20)
            .map(|i| record(&format!("s{}", (n + i) % 13), None, &[7u8; 2048]))
            .collect();
        let ids: Vec<_> = batch.iter().map(|r| r.event_id).collect();
        match log.append(batch).await {
            Ok(_) => acknowledged.extend(ids),
            Err(e) => return (acknowledged, ids, e),
        }
    }
    panic!("the small disk never filled up");
}

/// Every id of `acknowledged` is stored, none of `refused`, and the log
/// holds exactly the acknowledged records.
async fn holds_exactly(log: &SegmentLog, acknowledged: &[uuid::Uuid], refused: &[uuid::Uuid]) {
    assert_eq!(log.head(), acknowledged.len() as u64);
    let stored: BTreeSet<_> = log
        .read_all(1, usize::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    for id in acknowledged {
        assert!(stored.contains(id), "an acknowledged record is lost");
    }
    for id in refused {
        assert!(
            !stored.contains(id),
            "a record of the refused batch was kept"
        );
    }
}

/// A data directory whose `segments` folder is a tmpfs of `megabytes`.
fn segments_on_small_disk(name: &str, megabytes: u64) -> Option<(PathBuf, SmallDisk)> {
    let data = fresh_dir(name);
    let disk = SmallDisk::mount(&data.join("segments"), megabytes)?;
    Some((data, disk))
}

#[tokio::test]
async fn a_batch_refused_on_a_full_disk_leaves_nothing_behind_after_a_restart() {
    let Some((data, disk)) = segments_on_small_disk("full-segments", 2) else {
        return;
    };
    let (acknowledged, refused, error) = {
        let log = SegmentLog::open(&data).unwrap();
        let (acknowledged, refused, error) = append_until_refused(&log).await;
        assert!(
            log.unavailable().is_some(),
            "the log says it cannot take appends"
        );
        // Reads go on.
        holds_exactly(&log, &acknowledged, &refused).await;
        (acknowledged, refused, error)
    };
    assert!(matches!(error, LogError::Storage(_)), "{error:?}");
    assert!(
        error.to_string().contains("nothing of this batch was kept"),
        "{error}"
    );
    // The cause is kept typed, not flattened into words: the disk is full.
    let LogError::Storage(failure) = &error else {
        unreachable!()
    };
    assert_eq!(
        failure.cause::<std::io::Error>().map(|e| e.kind()),
        Some(std::io::ErrorKind::StorageFull),
        "{failure:?}"
    );
    // A restart on a larger disk.
    disk.resize(64);
    let log = SegmentLog::open(&data).unwrap();
    holds_exactly(&log, &acknowledged, &refused).await;
    let appended = log.append(vec![record("after", None, b"x")]).await.unwrap();
    assert_eq!(appended[0].position, acknowledged.len() as u64 + 1);
    drop(log);
    let report = openptl_log::segment::verify(&data).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A backup that runs out of space is never taken for one: restore refuses
/// it, `verify` reports it, a start refuses it; the same backup taken again
/// with room finishes and restores whole. (It once passed `verify` and
/// restored a third of the log without a word.)
#[tokio::test]
async fn a_backup_that_runs_out_of_space_is_never_restored_or_served() {
    use openptl_log::segment::{backup, restore, verify};
    let data = fresh_dir("backup-full-source");
    {
        let log = SegmentLog::open(&data).unwrap();
        for n in 0..200 {
            let batch = (0..20)
                .map(|i| record(&format!("s{}", (n + i) % 13), None, &[7u8; 2048]))
                .collect();
            log.append(batch).await.unwrap();
        }
    }
    let copy = fresh_dir("backup-full-copy");
    let Some(disk) = SmallDisk::mount(&copy, 4) else {
        return;
    };
    let error = backup(&data, &copy, &mut |_| {}).expect_err("no room for the backup");
    assert!(error.to_string().contains("No space left"), "{error}");
    let restored = fresh_dir("backup-full-restored");
    let refused = restore(&copy, &restored).expect_err("a half backup is not restored");
    assert!(refused.to_string().contains("did not finish"), "{refused}");
    let report = verify(&copy).unwrap();
    assert!(
        report.problems.iter().any(|p| p.contains("did not finish")),
        "{:?}",
        report.problems
    );
    assert!(
        SegmentLog::open(&copy).is_err(),
        "a half backup is not served"
    );
    disk.resize(64);
    let done = backup(&data, &copy, &mut |_| {}).unwrap();
    assert_eq!(done.position, 4000);
    let again = fresh_dir("backup-full-restored-again");
    assert_eq!(restore(&copy, &again).unwrap().position, 4000);
    assert!(verify(&again).unwrap().problems.is_empty());
}

#[tokio::test]
async fn appends_resume_by_themselves_once_there_is_space_again() {
    let Some((data, disk)) = segments_on_small_disk("full-then-freed", 2) else {
        return;
    };
    let log = SegmentLog::open(&data).unwrap();
    let (acknowledged, refused, _) = append_until_refused(&log).await;
    // Still full: another append is refused too and keeps nothing.
    disk.fill();
    let again = vec![record("again", None, &[1u8; 4096])];
    let again_id = again[0].event_id;
    assert!(log.append(again).await.is_err());
    // While the disk under the segments stays full, the writer's probes
    // (every 2 s) find no room: it does not claim to take appends.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(log.unavailable().is_some(), "the probe looked elsewhere");
    disk.resize(64);
    // With no append to try, the writer's probe finds the space (a generous
    // ceiling, not a timing assertion).
    let deadline = Instant::now() + Duration::from_secs(60);
    while log.unavailable().is_some() {
        assert!(
            Instant::now() < deadline,
            "the log never took appends again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let appended = log.append(vec![record("after", None, b"x")]).await.unwrap();
    assert_eq!(appended[0].position, acknowledged.len() as u64 + 1);
    let mut refused = refused;
    refused.push(again_id);
    drop(log);
    let log = SegmentLog::open(&data).unwrap();
    let mut acknowledged = acknowledged;
    acknowledged.push(appended[0].event_id);
    holds_exactly(&log, &acknowledged, &refused).await;
}

#[tokio::test]
async fn a_full_disk_under_the_index_stops_appends_not_reads_and_loses_nothing() {
    let data = fresh_dir("full-index");
    let Some(disk) = SmallDisk::mount(&data.join("index"), 2) else {
        return;
    };
    let mut acknowledged = Vec::new();
    {
        let log = SegmentLog::open(&data).unwrap();
        // sled writes behind the appends: go on until the log notices.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut n = 0u64;
        while log.unavailable().is_none() {
            assert!(Instant::now() < deadline, "the index never filled its disk");
            let batch: Vec<_> = (0..50)
                .map(|i| record(&format!("stream-{n}-{i}"), None, b"x"))
                .collect();
            let ids: Vec<_> = batch.iter().map(|r| r.event_id).collect();
            n += 1;
            match log.append(batch).await {
                Ok(_) => acknowledged.extend(ids),
                Err(e) => {
                    assert!(matches!(e, LogError::Storage(_)), "{e:?}");
                    break;
                }
            }
        }
        let refused = log.append(vec![record("late", None, b"x")]).await;
        assert!(
            refused.is_err(),
            "appends stop once the index cannot be written"
        );
        // Reads go on: every acknowledged record, by position and by stream.
        holds_exactly(&log, &acknowledged, &[]).await;
        let one = log.read_stream("stream-0-0").await.unwrap();
        assert_eq!(one.len(), 1);
    }
    // A restart once there is room: the index catches up from the segments.
    disk.resize(256);
    let log = SegmentLog::open(&data).unwrap();
    holds_exactly(&log, &acknowledged, &[]).await;
    assert!(log.unavailable().is_none());
    log.append(vec![record("after", None, b"x")]).await.unwrap();
    drop(log);
    let report = openptl_log::segment::verify(&data).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

/// A note on pathway `DISK-{p}` with event id `id`.
fn note(p: usize, id: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","pathway_id":"DISK-{p}","type":"tracking_note_added","occurred_on":"2025-03-04","data":{{"text":"{}"}}}}"#,
        "n".repeat(1500)
    )
}

fn referral(p: usize) -> String {
    format!(
        r#"{{"event_id":"00000000-0000-4000-8000-{p:012}","pathway_id":"DISK-{p}","type":"referral_received","occurred_on":"2025-03-03","data":{{"nhs_number":"9434765919","trust":"RXH","tumour_site":"lung","route":"urgent_suspected_cancer"}}}}"#
    )
}

/// The event ids stored on pathway `DISK-{p}`.
fn stored_ids(server: &Server, p: usize) -> BTreeSet<String> {
    let (status, body) = server.get(&format!("/v1/pathways/DISK-{p}/events"));
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}

fn metric(server: &Server, name: &str) -> Option<f64> {
    let (_, text) = server.get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn the_service_on_a_full_disk_refuses_appends_serves_reads_and_keeps_nothing_refused() {
    let data = fresh_dir("full-service");
    let Some(disk) = SmallDisk::mount(&data, 24) else {
        return;
    };
    let mut server = Server::start(&data, &[]);
    let pathways = 4;
    for p in 0..pathways {
        let (status, body) =
            request(&server.addr, "POST", "/v1/events", Some(&referral(p))).unwrap();
        assert_eq!(status, 201, "{body}");
    }
    assert_eq!(metric(&server, "openptl_log_writable"), Some(1.0));
    // A token written while there is room: it must work after everything.
    let (status, body) = request(
        &server.addr,
        "POST",
        "/v1/tokens",
        Some(r#"{"role":"manager","trusts":["RXH"],"label":"before the disk filled"}"#),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let manager: serde_json::Value = serde_json::from_str(&body).unwrap();
    let manager = manager["token"].as_str().unwrap().to_string();
    // Batches of notes until the disk is full.
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    let mut refused: BTreeSet<String> = BTreeSet::new();
    let mut serial = 0u64;
    'filling: for _ in 0..100_000 {
        let ids: Vec<String> = (0..50)
            .map(|_| {
                serial += 1;
                format!("00000000-0000-4000-9000-{serial:012}")
            })
            .collect();
        let events: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(i, id)| note(i % pathways, id))
            .collect();
        let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
        let (status, answer) = request(&server.addr, "POST", "/v1/events", Some(&body)).unwrap();
        match status {
            201 => acknowledged.extend(ids),
            503 => {
                assert!(answer.contains("\"unavailable\""), "{answer}");
                refused.extend(ids);
                break 'filling;
            }
            other => panic!("unexpected {other}: {answer}"),
        }
    }
    assert!(!refused.is_empty(), "the disk never filled up");
    // Appends fail: not ready, but alive, measured and still reading.
    let (status, body) = server.get("/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("log_unavailable"), "{body}");
    // It says why, without the operator reading the service's log.
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        ready["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(metric(&server, "openptl_log_writable"), Some(0.0));
    let before: BTreeSet<String> = (0..pathways).flat_map(|p| stored_ids(&server, p)).collect();
    assert!(acknowledged.is_subset(&before));
    assert!(before.is_disjoint(&refused));
    // Not a byte left: a token cannot be written (refused, the file whole),
    // and a snapshot cannot either.
    disk.fill();
    let (status, body) = request(
        &server.addr,
        "POST",
        "/v1/tokens",
        Some(r#"{"role":"analyst","trusts":["RXH"],"label":"on a full disk"}"#),
    )
    .unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"token_store_unavailable\""), "{body}");
    // Reads go on: their access log lines wait in memory (decision 194).
    assert_eq!(server.get("/v1/pathways/DISK-0").0, 200, "reads go on");
    // A graceful stop writes a snapshot, which does not fit: it must not
    // stop the service from stopping cleanly, nor corrupt anything.
    server.stop_gracefully();
    for partial in ["projection.tmp", "tokens.json.tmp"] {
        assert!(
            !data.join(partial).exists(),
            "{partial} was left holding the space"
        );
    }
    // A restart on a larger disk: exactly what was acknowledged.
    disk.resize(256);
    let server = Server::start(&data, &[]);
    server.wait_ready();
    let after: BTreeSet<String> = (0..pathways).flat_map(|p| stored_ids(&server, p)).collect();
    assert!(
        acknowledged.is_subset(&after),
        "an acknowledged event is lost"
    );
    assert!(
        after.is_disjoint(&refused),
        "an event of the refused batch was kept"
    );
    assert_eq!(metric(&server, "openptl_log_writable"), Some(1.0));
    // The tokens file is whole: the token made before works, the refused one
    // was never made.
    let (status, body) =
        common::request_as(&server.addr, Some(&manager), "GET", "/v1/ptl", None).unwrap();
    assert_eq!(status, 200, "{body}");
    let (_, tokens) = server.get("/v1/tokens");
    assert!(!tokens.contains("on a full disk"), "{tokens}");
    // Appends work again.
    let (status, body) = request(
        &server.addr,
        "POST",
        "/v1/events",
        Some(&note(0, "00000000-0000-4000-a000-000000000001")),
    )
    .unwrap();
    assert_eq!(status, 201, "{body}");
    drop(server);
    let verified = std::process::Command::new(common::binary())
        .args(["verify", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}
