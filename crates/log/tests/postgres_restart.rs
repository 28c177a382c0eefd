//! PostgreSQL restarted under a running PgLog (issue 20): while it is down
//! the log says it is unavailable and appends fail at once, recording
//! nothing; once it is back the log recovers by itself, and every
//! acknowledged event is stored, at the position it was acknowledged with,
//! positions gap-free.
//!
//! Stops and starts the machine's PostgreSQL cluster (`pg_ctlcluster`, as
//! root, as `.ci/run` starts it), so it is a test binary of its own: cargo
//! runs test binaries one after another, and nothing else here runs while
//! the database is down. A guard starts the cluster again however the test
//! ends. Says SKIPPED loudly (fails under `CI=true`) without PostgreSQL,
//! `pg_ctlcluster`, or with
//! an `OPENPTL_TEST_POSTGRES` that is not this machine's.

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openptl_log::suite::record;
use openptl_log::{EventLog, LogError, PgLog};
use uuid::Uuid;

const SCHEMA: &str = "openptl_restart";

fn url() -> String {
    std::env::var("OPENPTL_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn skipped(why: &str) {
    openptl_testkit::skip(&format!(
        "{why}; PostgreSQL restarts under a running node are NOT tested here. .ci/run starts PostgreSQL"
    ));
}

/// The local cluster `.ci/run` starts: `pg_ctlcluster VERSION main`.
struct Cluster {
    version: String,
}

impl Cluster {
    fn find() -> Option<Cluster> {
        let version = std::fs::read_dir("/etc/postgresql")
            .ok()?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .min()?;
        Command::new("pg_ctlcluster").arg("--help").output().ok()?;
        Some(Cluster { version })
    }

    fn ctl(&self, action: &str) -> bool {
        let mut command = Command::new("pg_ctlcluster");
        command.args(["--skip-systemctl-redirect", &self.version, "main", action]);
        if action == "stop" {
            command.args(["-m", "fast"]);
        }
        match command.output() {
            Ok(out) if out.status.success() => true,
            Ok(out) => {
                eprintln!(
                    "pg_ctlcluster {action}: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                false
            }
            Err(e) => {
                eprintln!("pg_ctlcluster {action}: {e}");
                false
            }
        }
    }

    fn reachable() -> bool {
        std::net::TcpStream::connect_timeout(
            &"127.0.0.1:5432".parse().expect("an address"),
            Duration::from_secs(1),
        )
        .is_ok()
    }
}

/// Starts the cluster again when dropped, whatever happened (a failed
/// assertion unwinds through here too).
struct StartAgain<'a>(&'a Cluster);

impl Drop for StartAgain<'_> {
    fn drop(&mut self) {
        if !Cluster::reachable() {
            self.0.ctl("start");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Cluster::reachable() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// What the background appender saw.
#[derive(Default)]
struct Seen {
    /// Acknowledged: event id and position.
    acknowledged: Vec<(Uuid, u64)>,
    /// Refused with a storage error: event id, and whether the error said
    /// the outcome is unknown (a COMMIT unanswered); the others recorded
    /// nothing.
    refused: Vec<(Uuid, bool)>,
}

async fn wait_for(ceiling: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + ceiling;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_rides_out_a_postgres_restart() {
    let admin = match tokio_postgres::connect(&url(), tokio_postgres::NoTls).await {
        Ok((client, connection)) => {
            tokio::spawn(connection);
            client
        }
        Err(e) => return skipped(&format!("no PostgreSQL at {} ({e})", url())),
    };
    if !(url().contains("127.0.0.1") || url().contains("localhost")) {
        return skipped("OPENPTL_TEST_POSTGRES is not this machine's PostgreSQL");
    }
    let Some(cluster) = Cluster::find() else {
        return skipped("no pg_ctlcluster or /etc/postgresql on this machine");
    };
    admin
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .await
        .unwrap();
    drop(admin);
    let log = Arc::new(PgLog::open_in_schema(&url(), SCHEMA).await.unwrap());
    for i in 0..5u8 {
        log.append(vec![record("before", None, &[i])])
            .await
            .unwrap();
    }

    // A client appends all along, before, during and after the outage.
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = {
        let (log, seen, stop) = (log.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let r = record("along", None, &i.to_be_bytes());
                let id = r.event_id;
                match log.append(vec![r]).await {
                    Ok(done) => seen
                        .lock()
                        .unwrap()
                        .acknowledged
                        .push((id, done[0].position)),
                    Err(LogError::Storage(_)) => seen.lock().unwrap().refused.push((id, false)),
                    Err(LogError::OutcomeUnknown(_)) => {
                        seen.lock().unwrap().refused.push((id, true))
                    }
                    Err(e) => panic!("{e}"),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    let guard = StartAgain(&cluster);
    assert!(cluster.ctl("stop"), "could not stop PostgreSQL");
    assert!(
        wait_for(Duration::from_secs(10), || log.unavailable().is_some()).await,
        "the log did not notice PostgreSQL was gone"
    );
    // An append now fails, promptly, and records nothing.
    let during = record("during", None, b"lost");
    let during_id = during.event_id;
    let started = Instant::now();
    let refused = tokio::time::timeout(Duration::from_secs(20), log.append(vec![during]))
        .await
        .expect("an append hung while PostgreSQL was down");
    assert!(matches!(refused, Err(LogError::Storage(_))), "{refused:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(log.unavailable().is_some());

    assert!(cluster.ctl("start"), "could not start PostgreSQL");
    drop(guard);
    // It recovers by itself: appends work and it is available again.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after = loop {
        match log.append(vec![record("after", None, b"back")]).await {
            Ok(done) => break done,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("appends did not come back within 60 s: {e}"),
        }
    };
    assert!(
        wait_for(Duration::from_secs(30), || log.unavailable().is_none()).await,
        "still unavailable: {:?}",
        log.unavailable()
    );
    // The appender gets through again too.
    let acknowledged_before = seen.lock().unwrap().acknowledged.len();
    assert!(
        wait_for(Duration::from_secs(10), || seen
            .lock()
            .unwrap()
            .acknowledged
            .len()
            > acknowledged_before + 3)
        .await,
        "the appender did not get through after the restart"
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    appender.await.unwrap();

    // Every acknowledged event is stored where it was acknowledged; the
    // refused one during the outage is not; positions run 1..=head.
    let head = after[0].position.max(log.head());
    let all = loop {
        match log.read_all(1, 100_000).await {
            Ok(all) => break all,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    let positions: Vec<u64> = all.iter().map(|r| r.position).collect();
    assert_eq!(
        positions,
        (1..=all.len() as u64).collect::<Vec<_>>(),
        "gap-free"
    );
    assert!(all.len() as u64 >= head);
    let stored: std::collections::HashMap<Uuid, u64> =
        all.iter().map(|r| (r.event_id, r.position)).collect();
    let seen = seen.lock().unwrap();
    for (id, position) in &seen.acknowledged {
        assert_eq!(stored.get(id), Some(position), "acknowledged event {id}");
    }
    assert!(
        !stored.contains_key(&during_id),
        "a refused append was stored"
    );
    assert!(
        !seen.refused.is_empty(),
        "no append of the client was refused while PostgreSQL was down"
    );
    eprintln!(
        "restart: {} acknowledged, {} refused during the outage, head {}",
        seen.acknowledged.len(),
        seen.refused.len(),
        all.len()
    );
}
