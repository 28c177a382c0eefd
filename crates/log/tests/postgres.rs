//! The shared `EventLog` suite against PostgreSQL, plus what only a shared
//! database can show: two logs (two nodes) appending to one table.
//!
//! Needs the machine's PostgreSQL (`OPENPTL_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`); without it every test here
//! says SKIPPED loudly and passes. `.ci/run` starts it.

use std::sync::atomic::{AtomicUsize, Ordering};

use openptl_log::suite::{self, record};
use openptl_log::{EventLog, LogError, PgLog};

fn url() -> String {
    std::env::var("OPENPTL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A connection for housekeeping, or None (with a loud line) when there is
/// no PostgreSQL to test against.
async fn admin() -> Option<tokio_postgres::Client> {
    match tokio_postgres::connect(&url(), tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            Some(client)
        }
        Err(e) => {
            eprintln!(
                "\n!!! SKIPPED: no PostgreSQL at {} ({e}); the PostgreSQL log is NOT tested here. .ci/run starts one.\n",
                url()
            );
            None
        }
    }
}

/// A fresh schema (dropped first, so reruns start clean).
async fn fresh(admin: &tokio_postgres::Client, name: &str) -> PgLog {
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .await
        .unwrap();
    PgLog::open_in_schema(&url(), name).await.unwrap()
}

#[tokio::test]
async fn postgres_log_passes_the_shared_suite() {
    let Some(admin) = admin().await else { return };
    let counter = AtomicUsize::new(0);
    let admin = &admin;
    suite::run_all(|| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move { fresh(admin, &format!("openptl_suite_{n}")).await }
    })
    .await;
}

#[tokio::test]
async fn two_nodes_share_one_gap_free_log() {
    let Some(admin) = admin().await else { return };
    let a = std::sync::Arc::new(fresh(&admin, "openptl_two_nodes").await);
    let b = std::sync::Arc::new(
        PgLog::open_in_schema(&url(), "openptl_two_nodes")
            .await
            .unwrap(),
    );
    // Both nodes append concurrently, partly to the same streams, with
    // expected versions: every append lands once or conflicts cleanly.
    let mut tasks = Vec::new();
    for (n, log) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            let mut stored = 0;
            let mut conflicts = 0;
            for i in 0..40u8 {
                let stream = format!("s{}", i % 5);
                let version = log.read_stream(&stream).await.unwrap().len() as u64;
                match log
                    .append(vec![record(&stream, Some(version), &[n as u8, i])])
                    .await
                {
                    Ok(_) => stored += 1,
                    Err(LogError::VersionConflict { .. }) => conflicts += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            (stored, conflicts)
        }));
    }
    let mut stored = 0u64;
    for t in tasks {
        let (s, _) = t.await.unwrap();
        stored += s;
    }
    // Each node sees the other's appends (through its head poller).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while (a.head() != stored || b.head() != stored) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!((a.head(), b.head()), (stored, stored));
    let all_a = a.read_all(1, 10_000).await.unwrap();
    let all_b = b.read_all(1, 10_000).await.unwrap();
    assert_eq!(all_a, all_b);
    let positions: Vec<u64> = all_a.iter().map(|r| r.position).collect();
    assert_eq!(positions, (1..=stored).collect::<Vec<_>>(), "gap-free");
    for stream in 0..5 {
        let versions: Vec<u64> = a
            .read_stream(&format!("s{stream}"))
            .await
            .unwrap()
            .iter()
            .map(|r| r.version)
            .collect();
        assert_eq!(versions, (1..=versions.len() as u64).collect::<Vec<_>>());
    }
    // The hash chain is the segment log's: recomputed from the records it
    // ends where the head row says.
    let mut hash = [0u8; 32];
    for r in &all_a {
        hash = openptl_log::segment::record_hash(r, &hash);
    }
    let row = admin
        .query_one("SELECT last_hash FROM openptl_two_nodes.openptl_head", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, Vec<u8>>(0), hash.to_vec());
}
