//! Tests of the projection: runner, refresh, snapshots and the caches.

use super::snapshots::prepare_snapshot;
use super::*;

fn stored(position: u64, stream: &str) -> StoredRecord {
    StoredRecord {
        position,
        stream_id: stream.to_string(),
        version: 1,
        event_id: uuid::Uuid::new_v4(),
        event_type: "tracking_note_added".to_string(),
        schema_version: 1,
        recorded_at: Utc::now(),
        actor: "test".to_string(),
        payload: Vec::new(),
    }
}

#[test]
fn a_history_read_back_never_takes_another_streams_record() {
    let own = vec![stored(3, "A"), stored(7, "A")];
    assert_eq!(own_records("A", Ok(own.clone())).unwrap(), own);
    let mixed = vec![stored(3, "A"), stored(5, "B")];
    let refused = own_records("A", Ok(mixed)).unwrap_err().to_string();
    assert!(refused.contains("position 5"), "{refused}");
    assert!(!refused.contains('B'), "{refused}");
}

/// The header of a snapshot of no pathways (of an empty log), as this
/// binary writes it.
fn empty_header(config: &RulesConfig) -> snapshot::Header {
    snapshot::Header::new(
        config,
        0,
        uuid::Uuid::from_u128(7),
        chrono::NaiveDate::from_ymd_opt(2025, 4, 7).unwrap(),
        0,
    )
}

#[test]
fn a_snapshot_of_a_newer_format_is_ignored_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projection.snapshot");
    let config = RulesConfig::defaults();
    let mut header = empty_header(&config);
    snapshot::write(&path, &header, std::iter::empty()).unwrap();
    assert!(prepare_snapshot(&path, &config).is_ok());
    header.format = snapshot::FORMAT + 1;
    snapshot::write(&path, &header, std::iter::empty()).unwrap();
    let refused = prepare_snapshot(&path, &config).err().expect("ignored");
    assert!(
        refused
            .to_string()
            .contains(&format!("format {}", snapshot::FORMAT + 1)),
        "{refused}"
    );
}

/// A snapshot whose pathways do not hold together is refused while it is
/// prepared (before the log is open), never installed: a pathway's
/// positions out of order or beyond the snapshot's, records missing, a
/// pathway given twice. One that does is used.
#[test]
fn a_snapshot_whose_pathways_do_not_hold_together_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projection.snapshot");
    let config = RulesConfig::defaults();
    let pathway = |id: &'static str, positions: &[u64]| snapshot::StoredPathway {
        id: Cow::Borrowed(id),
        positions: positions.to_vec(),
        trusts: Some((Cow::Borrowed("RX1"), vec![Cow::Borrowed("RX1")])),
        state: None,
    };
    let cases = [
        (vec![pathway("A", &[1, 3]), pathway("B", &[2])], None),
        (
            vec![pathway("A", &[3, 1]), pathway("B", &[2])],
            Some("out of order"),
        ),
        (
            vec![pathway("A", &[1, 4]), pathway("B", &[2])],
            Some("beyond its position"),
        ),
        (
            vec![pathway("A", &[1]), pathway("B", &[2])],
            Some("do not account for every record"),
        ),
        (
            vec![pathway("A", &[1, 3]), pathway("A", &[2])],
            Some("do not account for every record"),
        ),
    ];
    for (pathways, refused) in cases {
        let header = snapshot::Header::new(
            &config,
            3,
            uuid::Uuid::from_u128(7),
            chrono::NaiveDate::from_ymd_opt(2025, 4, 7).unwrap(),
            2,
        );
        // One pathway a chunk: the chunks are decoded on every core.
        let chunks: Vec<_> = pathways.iter().map(|p| vec![p.clone()]).collect();
        snapshot::write(&path, &header, chunks.into_iter()).unwrap();
        match (prepare_snapshot(&path, &config), refused) {
            (Ok(prepared), None) => assert_eq!(prepared.pathways(), 2),
            (Err(why), Some(expected)) => {
                assert!(why.to_string().contains(expected), "{why}")
            }
            (Ok(_), Some(expected)) => panic!("used, though {expected}"),
            (Err(why), None) => panic!("refused: {why}"),
        }
    }
}

/// A snapshot written by another build of the same version is not used:
/// its states were evaluated by other code (decision 169).
#[test]
fn a_snapshot_of_another_build_of_the_same_version_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("projection.snapshot");
    let config = RulesConfig::defaults();
    let mut header = empty_header(&config);
    let (version, build) = header.binary.split_once('+').expect("version+build");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert!(
        build.len() == 16 && build.bytes().all(|b| b.is_ascii_hexdigit()),
        "{build}"
    );
    header.binary = format!("{version}+{}", "0".repeat(16));
    snapshot::write(&path, &header, std::iter::empty()).unwrap();
    let refused = prepare_snapshot(&path, &config).err().expect("ignored");
    assert!(
        refused.to_string().contains("written by build"),
        "{refused}"
    );
}

/// The record dates read from the log in place (after a fold from nothing
/// or a restore) are those the records give as they are applied: each
/// event answers for its own date, an amendment for any date.
#[test]
fn record_dates_read_from_the_log_are_those_applied() {
    use openptl_rules::{EventData, EventType};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = openptl_log::SegmentLog::open(dir.path()).unwrap();
    let day = |d: u32| chrono::NaiveDate::from_ymd_opt(2025, 3, d).unwrap();
    let note = EventData::from_json(
        EventType::TrackingNoteAdded,
        serde_json::json!({ "text": "chased the report" }),
    )
    .unwrap();
    let voided = EventData::from_json(
        EventType::EventVoided,
        serde_json::json!({ "voids": uuid::Uuid::from_u128(1), "reason": "not this patient" }),
    )
    .unwrap();
    let records: Vec<(&str, EventData, chrono::NaiveDate)> = vec![
        ("A", note.clone(), day(3)),
        ("B", note.clone(), day(9)),
        ("A", voided, day(10)),
        ("C", note, day(1)),
    ];
    for (stream, data, on) in &records {
        let new = openptl_log::NewRecord {
            stream_id: stream.to_string(),
            event_id: uuid::Uuid::new_v4(),
            event_type: data.event_type().as_str().to_string(),
            schema_version: data.schema_version(),
            actor: "test".to_string(),
            payload: data.encode_payload(*on),
            expected_version: None,
        };
        runtime.block_on(log.append(vec![new])).unwrap();
    }
    let stored = runtime.block_on(log.read_positions(&[1, 2, 3, 4])).unwrap();
    let mut applied = RecordDays::default();
    for r in &stored {
        applied.push(r.position, r.recorded_at, date_affected(r.as_ref()));
    }
    let reader = log
        .in_place()
        .expect("a segment log reads in place")
        .unwrap();
    let read = record_days_from(reader.as_ref(), 4).unwrap();
    for position in 0..=5 {
        for d in 1..=12 {
            assert_eq!(
                read.after_date(day(d))(position),
                applied.after_date(day(d))(position),
                "position {position} as of {d} March"
            );
        }
    }
    assert!(
        read.after_date(day(2))(1) && !read.after_date(day(3))(1),
        "its own date"
    );
    assert!(!read.after_date(day(1))(3), "an amendment: any date");
    assert_eq!((read.first(), read.len()), (Some(1), 4));
}

/// The benchmark's account of the projection's memory counts each
/// structure once, as allocated: every id, record position and packed
/// state, and a dense entry and a PTL row per pathway.
#[test]
fn the_memory_account_counts_each_structure_once() {
    use crate::access::Principal;
    use crate::histories::event_of;
    let runtime = crate::histories::runtime();
    runtime.block_on(async {
        let log: Arc<dyn openptl_log::EventLog> = Arc::new(openptl_log::MemoryLog::new());
        let app = crate::App::open(
            log,
            RulesConfig::defaults(),
            Arc::new(crate::SystemClock),
            None,
        );
        let system = Principal::system("test");
        // Ids of up to 23 bytes lie inline in their entries; a longer one
        // is one allocation of 16 bytes of counts and the text, in whole 8
        // bytes (30 characters: 48).
        let long = "RXH-2025-REFERRAL-000000000022";
        let ids = ["P0", "P1", long];
        let referrals = ids.iter().map(|id| event_of(id, 0, 59, 0)).collect();
        app.append(referrals, &system, false).await.unwrap();
        let triage = vec![event_of("P1", 2, 62, 0)];
        app.append(triage, &system, false).await.unwrap();
        assert!(app.caught_up(std::time::Duration::from_secs(5)).await);
        let projection = app.projection();
        let used = projection.memory();
        assert_eq!(used.ids, 48);
        assert_eq!(std::mem::size_of::<PathwayKey>(), 24);
        let data = projection.read();
        let (mut packed, mut positions) = (0, 0);
        for entry in data.pathways.values() {
            packed += entry.state.as_ref().unwrap().as_bytes().len();
            positions += entry.positions.as_bytes().len();
        }
        assert_eq!((used.packed, used.positions), (packed, positions));
        assert!(packed > 0 && used.earlier <= packed);
        let entry = std::mem::size_of::<(PathwayKey, PathwayEntry)>();
        assert!(used.entries >= 3 * entry, "{used:?}");
        let rows = data.ptl.len();
        assert_eq!(rows, 3, "every pathway is open");
        let row = std::mem::size_of::<crate::ptl_index::PtlIndexEntry>();
        assert!(used.ptl >= rows * row, "{used:?}");
        assert_eq!(
            used.total(),
            used.entries + used.ids + used.positions + packed + used.ptl + used.record_days
        );
    });
}

/// Waits (up to 30 s: the runner looks at the clock each second) until
/// `projection` is on `day`.
async fn on_day(projection: &Projection, day: NaiveDate) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while projection.read().today != Some(day) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(projection.read().today, Some(day));
}

/// Every pathway's kept state, PTL keys and trusts are those its history
/// evaluated afresh on `day` gives.
async fn as_evaluated(projection: &Projection, day: NaiveDate) -> Result<(), String> {
    for id in projection.some_pathway_ids(usize::MAX) {
        let history = projection.history(&id).await.unwrap().unwrap();
        let afresh = projection.evaluated(&PathwayKey::from(id.as_str()), &history, day, None);
        let data = projection.read();
        let entry = data.pathways.get(&id).unwrap();
        let kept = entry.state.as_ref().map(|p| p.as_bytes().to_vec());
        let evaluated = afresh
            .current
            .as_ref()
            .map(|k| k.packed.as_bytes().to_vec());
        if kept != evaluated {
            return Err(format!("{id}'s state on {day}"));
        }
        let row = data
            .ptl
            .iter()
            .find(|row| *row.id == *id)
            .map(|row| row.keys);
        if row != afresh.current.and_then(|k| k.keys) {
            return Err(format!("{id}'s PTL keys on {day}"));
        }
        let trusts = entry.trusts.as_ref().map(|t| {
            let ever: Vec<String> = t.ever.iter().map(|t| t.to_string()).collect();
            (t.current.to_string(), ever)
        });
        if trusts != afresh.trusts {
            return Err(format!("{id}'s trusts on {day}"));
        }
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]
    /// On a new day, the states moved rather than read back (decision 219)
    /// are what evaluating every pathway afresh on the day keeps, byte for
    /// byte, and so are their PTL keys and trusts: after any sequence of
    /// appends, corrections, voids and days moving on, every refresh taken
    /// in bulk, checked after each day moved on. (That states are moved at
    /// all: the test below.)
    #[test]
    fn states_moved_to_a_new_day_are_those_evaluation_keeps(
        referrals in proptest::collection::vec((proptest::prelude::any::<u8>(), 0u16..60), 5),
        ops in proptest::collection::vec(crate::histories::op(), 1..60),
    ) {
        use crate::histories::{run_with, runtime};
        let start = "2025-05-20T12:00:00Z".parse().unwrap();
        runtime().block_on(run_with(start, true, referrals, ops, async |app: &crate::App, _: &[DateTime<Utc>]| {
            app.caught_up(std::time::Duration::from_secs(30)).await;
            on_day(app.projection(), app.today()).await;
            let checked = as_evaluated(app.projection(), app.today()).await;
            proptest::prop_assert!(checked.is_ok(), "{:?}", checked);
            Ok(())
        }))?;
    }
}

/// On a new day, a state whose events name a date after the day it was
/// evaluated on (a decision's earliest clinically appropriate date) is read
/// back, not moved: moved across that date it would miss the treatment
/// period the date starts. So is a state with events in the last two
/// weeks, which keeps earlier states for past views. A pathway settled
/// long before is moved. All end as evaluation on the new day keeps them
/// (decision 219).
#[test]
fn a_state_is_not_moved_across_a_date_its_events_name() {
    use crate::access::Principal;
    use crate::histories::{event_of, runtime, Settable};
    use std::sync::atomic::Ordering;

    runtime().block_on(async {
        let start: DateTime<Utc> = "2025-05-20T12:00:00Z".parse().unwrap();
        let clock = Arc::new(Settable(Mutex::new(start)));
        let log = Arc::new(openptl_log::MemoryLog::new());
        let app = crate::App::new(log, RulesConfig::defaults(), clock.clone());
        app.projection.set_bulk(0);
        let system = Principal::system("test");
        let projection = app.projection();
        let day = |s: &str| s.parse::<NaiveDate>().unwrap();
        // The clock moved on to `on`: once the projection is on it, every
        // state is what evaluation keeps, and one of `moved` is how many
        // states were moved in all.
        let new_day = async |on: &str, moved: &[usize]| {
            *clock.0.lock().unwrap() = format!("{on}T12:00:00Z").parse().unwrap();
            on_day(projection, day(on)).await;
            as_evaluated(projection, day(on)).await.unwrap();
            let count = projection.moved.load(Ordering::Relaxed);
            assert!(moved.contains(&count), "{count} moved by {on}");
        };
        // Days of 2025: referred 1 April, told 11 April, decided 12 April,
        // treated 16 April; a subsequent decision on 10 May whose earliest
        // clinically appropriate date is 30 May. P1 referred and closed in
        // April.
        let events = vec![
            event_of("P0", 0, 90, 0),
            event_of("P0", 9, 100, 1),
            event_of("P0", 6, 101, 1),
            event_of("P0", 7, 105, 1),
            event_of("P0", 13, 129, 20),
            event_of("P1", 0, 90, 0),
            event_of("P1", 9, 100, 0),
        ];
        app.append(events, &system, false).await.unwrap();
        assert!(app.caught_up(std::time::Duration::from_secs(30)).await);
        let from = |id: &str| {
            let data = projection.read();
            data.pathways
                .get(id)
                .unwrap()
                .state
                .as_ref()
                .unwrap()
                .settled()
                .unwrap()
                .from
        };
        assert_eq!(projection.read().today, Some(day("2025-05-20")));
        assert_eq!(
            (from("P0"), from("P1")),
            (day("2025-05-30"), day("2025-04-11"))
        );
        // P0 was evaluated before its 30 May: read back.
        new_day("2025-06-26", &[1]).await;
        // P2 referred on 20 June and triaged on 25 June: an earlier state
        // kept (20 to 24 June), so read back on 29 June; P0 and P1 moved.
        let events = vec![event_of("P2", 0, 170, 0), event_of("P2", 2, 175, 0)];
        app.append(events, &system, false).await.unwrap();
        assert!(app.caught_up(std::time::Duration::from_secs(30)).await);
        new_day("2025-06-29", &[3]).await;
        {
            let data = projection.read();
            let p2 = data.pathways.get("P2").unwrap().state.as_ref().unwrap();
            assert!(p2.earlier(day("2025-06-22")).is_some());
        }
        // A record folded in with the new day (the clock moved on, then a
        // treatment of P0's second plan on 1 July appended at once: the
        // runner looks at the clock each second, and almost always wakes
        // for the record first): P0 is read back, P1 and P2 moved. Should
        // the runner see the day first, P0 is moved too, then evaluated
        // with its record.
        *clock.0.lock().unwrap() = "2025-07-20T12:00:00Z".parse().unwrap();
        let events = vec![event_of("P0", 14, 181, 1)];
        app.append(events, &system, false).await.unwrap();
        assert!(app.caught_up(std::time::Duration::from_secs(30)).await);
        new_day("2025-07-20", &[5, 6]).await;
        let data = projection.read();
        let p0 = data.pathways.get("P0").unwrap();
        assert_eq!(
            p0.state.as_ref().unwrap().version(),
            6,
            "P0's record is in its state"
        );
    });
}
