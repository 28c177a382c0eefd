//! The shared `EventLog` suite against PostgreSQL, plus what only a shared
//! database can show: two logs (two nodes) appending to one table.
//!
//! Needs the machine's PostgreSQL (`OPENPTL_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/test`); without it every test here
//! says SKIPPED where it is seen (`openptl_testkit::skip`), and fails
//! under `CI=true`. `.ci/run` starts it.

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
            openptl_testkit::skip(&format!(
                "no PostgreSQL at {} ({e}); the PostgreSQL log is NOT tested here. .ci/run starts one",
                url()
            ));
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

/// `url` with one more query parameter.
fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

#[tokio::test]
async fn an_append_behind_a_held_head_lock_fails_within_the_lock_timeout() {
    let Some(admin) = admin().await else { return };
    drop(fresh(&admin, "openptl_lock_timeout").await);
    // A short lock timeout through the URL (the default is 5 s).
    let url = with_param(&url(), "options=-c%20lock_timeout%3D300ms");
    let log = PgLog::open_in_schema(&url, "openptl_lock_timeout")
        .await
        .unwrap();
    log.append(vec![record("s", Some(0), b"first")])
        .await
        .unwrap();
    // Another session (a node frozen inside its transaction) holds the head lock.
    admin
        .batch_execute("BEGIN; SELECT position FROM openptl_lock_timeout.openptl_head FOR UPDATE")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let refused = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        log.append(vec![record("s", Some(1), b"second")]),
    )
    .await
    .expect("the append waited for the head lock far beyond the lock timeout");
    assert!(matches!(refused, Err(LogError::Storage(_))), "{refused:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    admin.batch_execute("ROLLBACK").await.unwrap();
    // Nothing of the refused append was stored; the next one goes on at 2.
    let second = log
        .append(vec![record("s", Some(1), b"second")])
        .await
        .unwrap();
    assert_eq!(second[0].position, 2);
    assert_eq!(log.read_all(1, 10).await.unwrap().len(), 2);
    assert_eq!(log.unavailable(), None);
}

/// Whether `client`'s own connection is encrypted.
async fn uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn each_sslmode_connects_as_libpq_would() {
    use openptl_log::postgres::PgConnector;
    let Some(admin) = admin().await else { return };
    let connect = |url: String| async move { PgConnector::parse(&url)?.client().await };
    let plain = connect(with_param(&url(), "sslmode=disable"))
        .await
        .unwrap();
    assert!(!uses_tls(&plain).await);

    let ssl: String = admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
    if ssl != "on" {
        openptl_testkit::skip(&format!(
            "the PostgreSQL at {} has ssl = {ssl}; TLS connections are NOT tested here",
            url()
        ));
        return;
    }
    for mode in ["prefer", "require"] {
        let client = connect(with_param(&url(), &format!("sslmode={mode}")))
            .await
            .unwrap();
        assert!(uses_tls(&client).await, "{mode}");
    }
    // The server's certificate is self-signed: the Mozilla roots refuse it.
    let refused = connect(with_param(&url(), "sslmode=verify-full")).await;
    assert!(refused.is_err(), "verify-full accepted an unknown CA");

    // With the server's own certificate as the CA.
    let cert: String = admin
        .query_one("SHOW ssl_cert_file", &[])
        .await
        .unwrap()
        .get(0);
    if std::fs::read(&cert).is_err() || !url().contains("127.0.0.1") {
        openptl_testkit::not_tested(&format!(
            "cannot read {cert} or the URL is not 127.0.0.1; verify-ca/verify-full"
        ));
        return;
    }
    let root = format!("sslrootcert={cert}");
    let ca = connect(with_param(&url(), &format!("sslmode=verify-ca&{root}")))
        .await
        .unwrap();
    assert!(uses_tls(&ca).await);
    // The certificate does not name 127.0.0.1: verify-full refuses.
    let wrong_name = connect(with_param(&url(), &format!("sslmode=verify-full&{root}"))).await;
    assert!(
        wrong_name.is_err(),
        "verify-full accepted a certificate for another name"
    );
    // Debian's certificate names `localhost`, or the machine's name.
    let named = url().replace("127.0.0.1", "localhost");
    match connect(with_param(&named, &format!("sslmode=verify-full&{root}"))).await {
        Ok(full) => assert!(uses_tls(&full).await),
        Err(e) => openptl_testkit::not_tested(&format!(
            "{cert} does not name localhost ({e}); a verify-full success"
        )),
    }

    // A whole log over TLS.
    admin
        .batch_execute("DROP SCHEMA IF EXISTS openptl_tls CASCADE")
        .await
        .unwrap();
    let log = PgLog::open_in_schema(&with_param(&url(), "sslmode=require"), "openptl_tls")
        .await
        .unwrap();
    log.append(vec![record("s", Some(0), b"over tls")])
        .await
        .unwrap();
    assert_eq!(log.read_stream("s").await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_killed_under_load_lose_no_acknowledged_event() {
    let Some(admin) = admin().await else { return };
    drop(fresh(&admin, "openptl_killed").await);
    // Its connections are known by name, so only they are killed.
    let url = with_param(&url(), "application_name=openptl_killed");
    let log = std::sync::Arc::new(PgLog::open_in_schema(&url, "openptl_killed").await.unwrap());
    let mut clients = Vec::new();
    for c in 0..4u8 {
        let log = log.clone();
        clients.push(tokio::spawn(async move {
            let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
            for i in 0..60u8 {
                let r = record(&format!("k{c}"), None, &[c, i]);
                let id = r.event_id;
                match log.append(vec![r]).await {
                    Ok(done) => acknowledged.push((id, done[0].position)),
                    Err(LogError::Storage(_)) => refused.push((id, false)),
                    Err(LogError::OutcomeUnknown(_)) => refused.push((id, true)),
                    Err(e) => panic!("{e}"),
                }
            }
            (acknowledged, refused)
        }));
    }
    // Meanwhile every connection of the log is killed, again and again:
    // some kills land inside a transaction, some perhaps at its COMMIT.
    let killer = tokio::spawn(async move {
        let mut kills = 0;
        for i in 0..20u64 {
            tokio::time::sleep(std::time::Duration::from_millis(20 + (i * 37) % 60)).await;
            kills += admin
                .query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'openptl_killed'",
                    &[],
                )
                .await
                .unwrap()
                .len();
        }
        kills
    });
    let mut acknowledged = Vec::new();
    let mut refused = Vec::new();
    for c in clients {
        let (a, r) = c.await.unwrap();
        acknowledged.extend(a);
        refused.extend(r);
    }
    let kills = killer.await.unwrap();
    // The log comes back by itself, and reads work again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let all = loop {
        match log.read_all(1, 100_000).await {
            Ok(all) if log.unavailable().is_none() => break all,
            _ if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await
            }
            other => panic!("no recovery: {other:?} {:?}", log.unavailable()),
        }
    };
    let positions: Vec<u64> = all.iter().map(|r| r.position).collect();
    assert_eq!(
        positions,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    let stored: std::collections::HashMap<uuid::Uuid, u64> =
        all.iter().map(|r| (r.event_id, r.position)).collect();
    for (id, position) in &acknowledged {
        assert_eq!(stored.get(id), Some(position), "acknowledged event {id}");
    }
    for (id, unknown) in &refused {
        assert!(
            *unknown || !stored.contains_key(id),
            "refused event {id} was stored"
        );
    }
    eprintln!(
        "killed {kills} connections: {} acknowledged, {} refused, {} stored",
        acknowledged.len(),
        refused.len(),
        all.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_commit_goes_unanswered_is_settled() {
    let Some(admin) = admin().await else { return };
    drop(fresh(&admin, "openptl_settle").await);
    // Every COMMIT that moves the head takes a while (a deferred trigger),
    // so the test can kill the writer's connection in the middle of one.
    admin
        .batch_execute(
            "CREATE FUNCTION openptl_settle.slow_commit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$;
             CREATE CONSTRAINT TRIGGER slow_commit AFTER UPDATE ON openptl_settle.openptl_head
               DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION openptl_settle.slow_commit();",
        )
        .await
        .unwrap();
    let url = with_param(&url(), "application_name=openptl_settle");
    let log = std::sync::Arc::new(PgLog::open_in_schema(&url, "openptl_settle").await.unwrap());
    let first = record("s", Some(0), b"first");
    let id = first.event_id;
    let append = tokio::spawn({
        let log = log.clone();
        async move { log.append(vec![first]).await }
    });
    // Kill the writer's connection while it is in its COMMIT.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let killed = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE application_name = 'openptl_settle' AND state = 'active' AND query = 'COMMIT'",
                &[],
            )
            .await
            .unwrap();
        if !killed.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never saw the COMMIT");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // The writer learns the outcome on a new connection (here: it had not
    // committed, so the records are stored now) and answers for certain.
    let answer = tokio::time::timeout(std::time::Duration::from_secs(30), append)
        .await
        .expect("the settled append never answered")
        .unwrap()
        .unwrap();
    assert_eq!((answer[0].position, answer[0].event_id), (1, id));
    let all = log.read_all(1, 10).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].event_id, id);
    // The next append follows on at 2.
    let next = log
        .append(vec![record("s", Some(1), b"next")])
        .await
        .unwrap();
    assert_eq!(next[0].position, 2);
}

/// `openptl verify --store`: a sound log checks out with its anchors; a
/// record changed in place breaks its link; a tail rewritten with a
/// recomputed chain passes every link and is caught by the first anchor
/// it no longer matches; records removed from the end are caught by the
/// head row and the anchors.
#[tokio::test]
async fn verify_proves_the_chain_and_catches_a_rewritten_tail_by_its_anchors() {
    use openptl_log::anchor::{Anchor, AnchorError};
    use openptl_log::postgres::verify;
    let Some(admin) = admin().await else { return };
    let schema = "openptl_verify";
    let log = fresh(&admin, schema).await;
    for stream in ["A", "B", "C"] {
        for version in 0..20u64 {
            let payload = format!("{stream}{version}");
            log.append(vec![record(stream, Some(version), payload.as_bytes())])
                .await
                .unwrap();
        }
    }
    let first = Anchor::of(log.chain_head().await.unwrap().unwrap(), chrono::Utc::now());
    assert_eq!(first.position, 60);
    log.append(vec![record("A", Some(20), b"A20")])
        .await
        .unwrap();
    let second = Anchor::of(log.chain_head().await.unwrap().unwrap(), chrono::Utc::now());
    let anchors = vec![first.clone(), second.clone()];

    let report = verify(&url(), schema, &anchors).await.unwrap();
    assert_eq!((report.records, report.streams), (61, 3));
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(
        matches!(report.anchors, Some(Ok(2))),
        "{:?}",
        report.anchors
    );

    // A payload changed in place: the next record's link names it.
    admin
        .execute(
            &format!("UPDATE {schema}.openptl_events SET payload = 'forged' WHERE position = 10"),
            &[],
        )
        .await
        .unwrap();
    let report = verify(&url(), schema, &[]).await.unwrap();
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].starts_with("position 11:"),
        "{:?}",
        report.problems
    );

    // The whole chain after it recomputed, head row included: every link
    // holds, only the anchors tell.
    let records = log.read_all(1, 1000).await.unwrap();
    let mut prev = [0u8; 32];
    for r in &records {
        admin
            .execute(
                &format!("UPDATE {schema}.openptl_events SET prev_hash = $1 WHERE position = $2"),
                &[&prev.as_slice(), &(r.position as i64)],
            )
            .await
            .unwrap();
        prev = openptl_log::segment::record_hash(r, &prev);
    }
    admin
        .execute(
            &format!("UPDATE {schema}.openptl_head SET last_hash = $1"),
            &[&prev.as_slice()],
        )
        .await
        .unwrap();
    let report = verify(&url(), schema, &anchors).await.unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    match report.anchors {
        Some(Err(AnchorError::Mismatch {
            number, position, ..
        })) => {
            assert_eq!((number, position), (1, 60))
        }
        other => panic!("the rewrite went unseen: {other:?}"),
    }

    // The last record removed (head row moved back too): the second anchor
    // names a record the log no longer holds.
    admin
        .batch_execute(&format!(
            "DELETE FROM {schema}.openptl_events WHERE position = 61;
             UPDATE {schema}.openptl_head SET position = 60"
        ))
        .await
        .unwrap();
    let report = verify(&url(), schema, &[second]).await.unwrap();
    assert!(
        matches!(
            report.anchors,
            Some(Err(AnchorError::Missing { position: 61, .. }))
        ),
        "{:?}",
        report.anchors
    );
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(
        report.problems[0].contains("head row's hash"),
        "{:?}",
        report.problems
    );
}

/// A TCP relay in front of PostgreSQL whose connections open so far can be
/// frozen: they stay open and relay nothing more (a half-open TCP, a
/// firewall that dropped its state), while new ones work.
struct FreezingRelay {
    port: u16,
    next: std::sync::Arc<std::sync::atomic::AtomicU64>,
    frozen_below: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FreezingRelay {
    async fn start() -> FreezingRelay {
        let config: tokio_postgres::Config = url().parse().unwrap();
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(host) => host.clone(),
            other => panic!("a TCP host is needed, not {other:?}"),
        };
        let server = format!(
            "{host}:{}",
            config.get_ports().first().copied().unwrap_or(5432)
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = FreezingRelay {
            port: listener.local_addr().unwrap().port(),
            next: Default::default(),
            frozen_below: Default::default(),
        };
        let (next, frozen_below) = (relay.next.clone(), relay.frozen_below.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let id = next.fetch_add(1, Ordering::SeqCst);
                let server = tokio::net::TcpStream::connect(&server).await.unwrap();
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut from, mut to) in [(cr, sw), (sr, cw)] {
                    let frozen_below = frozen_below.clone();
                    tokio::spawn(async move {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        let mut buf = vec![0u8; 65536];
                        while let Ok(n @ 1..) = from.read(&mut buf).await {
                            while id < frozen_below.load(Ordering::SeqCst) {
                                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                            }
                            if to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        relay
    }

    fn url(&self) -> String {
        let config: tokio_postgres::Config = url().parse().unwrap();
        let user = config.get_user().unwrap_or("postgres");
        let db = config.get_dbname().unwrap_or("test");
        format!(
            "postgres://{user}@127.0.0.1:{}/{db}?sslmode=disable",
            self.port
        )
    }

    /// Every connection open now goes silent.
    fn freeze(&self) {
        self.frozen_below
            .store(self.next.load(Ordering::SeqCst), Ordering::SeqCst);
    }
}

/// Connections that go silent without closing are given up: an idle
/// writer's round trip finds its own (the next append goes on a new one),
/// and a read unanswered within its ceiling gives its connection up (the
/// next read opens another). Both once held the node for good, or for a
/// minute per append, while it said it was ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_gone_silent_are_given_up() {
    let Some(admin) = admin().await else { return };
    drop(fresh(&admin, "openptl_silent").await);
    let relay = FreezingRelay::start().await;
    let log = std::sync::Arc::new(
        PgLog::open_in_schema(&relay.url(), "openptl_silent")
            .await
            .unwrap(),
    );
    log.append(vec![record("s", Some(0), b"before")])
        .await
        .unwrap();
    relay.freeze();
    let read = tokio::spawn({
        let log = log.clone();
        async move { log.read_stream("s").await }
    });
    // The idle writer finds its connection silent and opens another.
    tokio::time::sleep(std::time::Duration::from_secs(8)).await;
    let started = std::time::Instant::now();
    let appended = log
        .append(vec![record("s", Some(1), b"after")])
        .await
        .unwrap();
    assert_eq!(appended[0].position, 2);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "the append waited for the silent connection: {:?}",
        started.elapsed()
    );
    // The read on the silent connection is answered (an error) within its
    // ceiling, not never; the next read goes on a new connection.
    let answered = tokio::time::timeout(std::time::Duration::from_secs(60), read)
        .await
        .expect("a read on a silent connection never returned")
        .unwrap();
    assert!(
        matches!(answered, Err(LogError::Storage(_))),
        "{answered:?}"
    );
    assert_eq!(log.read_stream("s").await.unwrap().len(), 2);
}

/// A database whose log went back (restored from a backup, or failed over
/// to a standby behind this node) leaves the node not ready and taking no
/// appends until restarted: it would otherwise hand out positions its
/// projection has already folded, and never show their new records.
#[tokio::test]
async fn a_log_that_goes_back_stops_the_node() {
    let Some(admin) = admin().await else { return };
    let log = fresh(&admin, "openptl_went_back").await;
    for i in 0..3u8 {
        log.append(vec![record("s", None, &[i])]).await.unwrap();
    }
    assert!(log.unavailable().is_none());
    admin
        .batch_execute(
            "DELETE FROM openptl_went_back.openptl_events WHERE position > 1;
             UPDATE openptl_went_back.openptl_head SET position = 1;",
        )
        .await
        .unwrap();
    let mut why = None;
    for _ in 0..100 {
        why = log.unavailable();
        if why.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let why = why.expect("the node stays ready on a log that went back");
    assert!(why.contains("went back from position 3 to 1"), "{why}");
    assert!(matches!(
        log.append(vec![record("s", None, b"more")]).await,
        Err(LogError::Storage(_))
    ));
}
