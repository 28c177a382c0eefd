//! The projection under a log that fails its reads: it reports the failure,
//! keeps serving what it holds, never hangs, and recovers once the log reads
//! again (issue 20: a read error once deadlocked the runner and every view);
//! and it follows a log whose every read takes longer than its runner's
//! one-second turn (a database over a slow link).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use openptl_app::access::Principal;
use openptl_app::Clock;
use openptl_app::{App, PtlQuery, ViewAt};
use openptl_log::{
    Appended, EventLog, InPlace, LogError, LogStats, MemoryLog, NewRecord, StoredRecord,
};
use openptl_rules::RulesConfig;
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

/// A memory log whose reads fail while `failing` is set, and whose pages
/// of the whole log take `slow_ms` to read.
struct FlakyLog {
    inner: MemoryLog,
    failing: AtomicBool,
    /// Reads by position fail (what the runner re-reads a changed
    /// pathway's history with); the rest read well.
    positions_failing: AtomicBool,
    slow_ms: AtomicU64,
}

impl FlakyLog {
    fn new() -> FlakyLog {
        FlakyLog {
            inner: MemoryLog::new(),
            failing: AtomicBool::new(false),
            positions_failing: AtomicBool::new(false),
            slow_ms: AtomicU64::new(0),
        }
    }

    fn check(&self) -> Result<(), LogError> {
        if self.failing.load(Ordering::SeqCst) {
            Err(LogError::Storage("injected read failure".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl EventLog for FlakyLog {
    async fn append(&self, batch: Vec<NewRecord>) -> Result<Vec<Appended>, LogError> {
        self.inner.append(batch).await
    }
    async fn append_verbatim(&self, records: Vec<StoredRecord>) -> Result<(), LogError> {
        self.inner.append_verbatim(records).await
    }
    async fn read_stream(&self, stream_id: &str) -> Result<Vec<StoredRecord>, LogError> {
        self.check()?;
        self.inner.read_stream(stream_id).await
    }
    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<StoredRecord>, LogError> {
        self.check()?;
        if self.positions_failing.load(Ordering::SeqCst) {
            return Err(LogError::Storage("injected read failure".into()));
        }
        self.inner.read_positions(positions).await
    }
    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<StoredRecord>, LogError> {
        self.check()?;
        let slow = self.slow_ms.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(slow)).await;
        self.inner.read_all(from, max).await
    }
    fn in_place(&self) -> Option<Result<Box<dyn InPlace + '_>, LogError>> {
        match self.check() {
            Err(e) => Some(Err(e)),
            Ok(()) => self.inner.in_place(),
        }
    }
    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredRecord>, LogError> {
        self.check()?;
        self.inner.find_event(event_id).await
    }
    fn head(&self) -> u64 {
        self.inner.head()
    }
    fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.watch_head()
    }
    fn stats(&self) -> LogStats {
        self.inner.stats()
    }
}

/// A clock the test moves on.
struct MovableClock(Mutex<DateTime<Utc>>);

impl Clock for MovableClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Waits (a generous ceiling: a hang, not a slow step, fails it) until `ok`.
async fn eventually(what: &str, ok: impl Fn() -> bool) {
    for _ in 0..600 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within 60 s");
}

/// An app on a [`FlakyLog`] (reading well for now), on 2025-04-01.
fn app_on_flaky_log() -> (Arc<FlakyLog>, Arc<MovableClock>, Arc<App>) {
    let log = Arc::new(FlakyLog::new());
    let clock = Arc::new(MovableClock(Mutex::new(
        "2025-04-01T12:00:00Z".parse().unwrap(),
    )));
    let app = Arc::new(App::new(
        log.clone(),
        RulesConfig::defaults(),
        clock.clone(),
    ));
    (log, clock, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_that_fails_a_read_never_hangs_the_projection() {
    let (log, clock, app) = app_on_flaky_log();
    let system = Principal::system("test");
    // More pathways than one step re-evaluates one at a time: a new day
    // reads them all back from the log in one fold.
    for chunk in 0..3 {
        let batch = (0..1000)
            .map(|i| {
                json!({
                    "pathway_id": format!("P{chunk}-{i}"), "type": "referral_received", "occurred_on": "2025-03-03",
                    "data": { "nhs_number": "943 476 5919", "trust": "RXH", "tumour_site": "lung", "route": "urgent_suspected_cancer" }
                })
            })
            .collect();
        app.append(batch, &system, true).await.unwrap();
    }
    assert!(app.caught_up(Duration::from_secs(60)).await);
    let (open_before, _) = app.projection().counts();
    assert_eq!(open_before, 3000);

    // The log fails its reads; a new day makes the runner read every pathway.
    log.failing.store(true, Ordering::SeqCst);
    *clock.0.lock().unwrap() = "2025-04-02T12:00:00Z".parse().unwrap();
    let projection = app.projection().clone();
    eventually("the failure is reported", || projection.failure().is_some()).await;
    assert!(
        !app.ready(),
        "not ready while the views cannot be brought up to date"
    );
    // Views still answer from what the projection holds (off the runtime:
    // a hang must fail the test, not stall it).
    let reading = app.projection().clone();
    let held = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::task::spawn_blocking(move || reading.counts().0),
    )
    .await
    .expect("a view waited for the projection's lock: the runner hangs")
    .unwrap();
    assert_eq!(held, 3000);

    // Once the log reads again, the projection catches up by itself.
    log.failing.store(false, Ordering::SeqCst);
    let ready = app.clone();
    eventually("the projection recovers", || ready.ready()).await;
    assert!(app.projection().failure().is_none());
}

/// The runner waits for the log a second at a time (to notice a new day
/// while idle); a read that takes longer than that is waited for across
/// turns, not started again each turn (it once was: over a slow link to
/// PostgreSQL, a node whose every page took over a second never caught up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_longer_than_the_runners_turn_is_waited_for() {
    let (log, _clock, app) = app_on_flaky_log();
    assert!(app.caught_up(Duration::from_secs(60)).await);
    log.slow_ms.store(1_600, Ordering::SeqCst);
    let system = Principal::system("test");
    let referral = json!({
        "pathway_id": "SLOW-1", "type": "referral_received", "occurred_on": "2025-03-03",
        "data": { "nhs_number": "943 476 5919", "trust": "RXH", "tumour_site": "lung", "route": "urgent_suspected_cancer" }
    });
    app.append(vec![referral], &system, false).await.unwrap();
    let projection = app.projection().clone();
    eventually("the slow page is folded in", || projection.counts().0 == 1).await;
    assert!(app.projection().failure().is_none());
}

/// A stored event this binary cannot read (a schema version after its
/// own, an event type it does not know: an upgrade, then a downgrade)
/// stops the projection, and `/readyz` says why; it once dropped the
/// pathway from every view with a log line only. Whether the record is met
/// by the fold from the start or followed live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_of_a_newer_openptl_stops_the_projection() {
    let newer = |event_type: &str, schema_version: u16| NewRecord {
        stream_id: "P-NEWER".into(),
        event_id: Uuid::new_v4(),
        event_type: event_type.into(),
        schema_version,
        actor: "a newer openptl".into(),
        payload: vec![0x80],
        expected_version: None,
    };
    for (record, before_start) in [
        (newer("referral_received", 3), true),
        (newer("referral_received", 3), false),
        (newer("pathway_teleported", 1), false),
    ] {
        let (log, _clock, app) = app_on_flaky_log();
        let system = Principal::system("test");
        let referral = json!({
            "pathway_id": "P-OLD", "type": "referral_received", "occurred_on": "2025-03-03",
            "data": { "nhs_number": "943 476 5919", "trust": "RXH", "tumour_site": "lung", "route": "urgent_suspected_cancer" }
        });
        if before_start {
            // Stored before the app starts: the fold from the start meets it.
            drop(app);
            log.inner.append(vec![record]).await.unwrap();
            let app = Arc::new(App::new(
                log.clone(),
                RulesConfig::defaults(),
                Arc::new(MovableClock(Mutex::new(
                    "2025-04-01T12:00:00Z".parse().unwrap(),
                ))),
            ));
            let projection = app.projection().clone();
            eventually("the failure is reported", || projection.failure().is_some()).await;
            let why = app.projection().failure().unwrap();
            assert!(why.contains("written by a newer OpenPTL"), "{why}");
            assert!(!app.ready());
            continue;
        }
        app.append(vec![referral], &system, false).await.unwrap();
        assert!(app.caught_up(Duration::from_secs(60)).await);
        log.inner.append(vec![record]).await.unwrap();
        let projection = app.projection().clone();
        eventually("the failure is reported", || projection.failure().is_some()).await;
        let why = app.projection().failure().unwrap();
        assert!(why.contains("written by a newer OpenPTL"), "{why}");
        assert!(!app.ready(), "not ready on a log it cannot read");
    }
}

/// A view never shows a record beyond the log position it says it
/// includes. The runner takes a new record into the projection (`apply`)
/// before it re-evaluates and publishes its pathway (`refresh`); a past
/// view in between once read the new record back while reporting the
/// position before it (found by review: a referral listed on a past PTL
/// whose position did not hold it). Here the refresh cannot read the
/// pathway back, which holds that window open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_shows_no_record_beyond_the_position_it_reports() {
    let (log, _clock, app) = app_on_flaky_log();
    let system = Principal::system("test");
    let referral = |id: &str| {
        json!({
            "pathway_id": id, "type": "referral_received", "occurred_on": "2025-03-03",
            "data": { "nhs_number": "943 476 5919", "trust": "RXH", "tumour_site": "lung", "route": "urgent_suspected_cancer" }
        })
    };
    app.append(vec![referral("A")], &system, false)
        .await
        .unwrap();
    assert!(app.caught_up(Duration::from_secs(60)).await);
    let projection = app.projection().clone();
    assert_eq!(projection.position(), 1);

    log.positions_failing.store(true, Ordering::SeqCst);
    app.append(vec![referral("B")], &system, false)
        .await
        .unwrap();
    eventually("the refresh fails", || projection.failure().is_some()).await;
    assert_eq!(projection.position(), 1, "B's position is not published");

    let today = app.ptl(&PtlQuery::default(), &system).await.unwrap();
    assert_eq!((today.position, today.total), (1, 1));
    for read_all in [false, true] {
        app.set_past_views_read_all(read_all);
        let query = PtlQuery {
            at: ViewAt {
                as_of: Some("2025-03-20".parse().unwrap()),
                ..ViewAt::default()
            },
            ..PtlQuery::default()
        };
        let past = app.ptl(&query, &system).await.unwrap();
        let ids: Vec<&str> = past.rows.iter().map(|r| r.pathway_id.as_str()).collect();
        assert_eq!(
            (past.position, ids),
            (1, vec!["A"]),
            "the full re-evaluation: {read_all}"
        );
    }
    // Once B can be read, it is published and shown.
    log.positions_failing.store(false, Ordering::SeqCst);
    eventually("B is published", || projection.position() == 2).await;
    app.set_past_views_read_all(false);
    let query = PtlQuery {
        at: ViewAt {
            as_of: Some("2025-03-20".parse().unwrap()),
            min_position: Some(2),
            ..ViewAt::default()
        },
        ..PtlQuery::default()
    };
    assert_eq!(app.ptl(&query, &system).await.unwrap().total, 2);
}
