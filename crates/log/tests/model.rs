//! Model-based test: random sequences of appends, reads and restarts are
//! applied to a [`Reference`] (the model) and a `SegmentLog` (the durable
//! log), which must agree on every answer except `recorded_at`. A restart
//! drops the `SegmentLog` and reopens it from the same directory: nothing
//! may be lost.
//!
//! The model is written here from the rules of a batch (SPEC 3.1), on
//! purpose sharing no code with the logs it checks (`plan_batch` and
//! `apply_plan` serve every backend, so a planning bug there would be in
//! both sides of a comparison with `MemoryLog`).

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use openptl_log::{Appended, EventLog, LogError, NewRecord, SegmentLog, StoredRecord};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use uuid::Uuid;

const STREAMS: &[&str] = &["alpha", "beta", "gamma", "delta"];

/// How a record's expected version is chosen, against the model's state.
#[derive(Debug, Clone)]
enum Ver {
    Any,
    Correct,
    /// Off by `1 + n` above the correct version, or one below it (odd `n`, when possible).
    Wrong(u8),
}

#[derive(Debug, Clone)]
enum Conflict {
    Payload,
    Stream,
    EventType,
}

/// How a record's event id is chosen.
#[derive(Debug, Clone)]
enum Id {
    Fresh,
    /// Same id and content as an earlier record (picked by index modulo the
    /// history); `true` also changes the actor, which is not content.
    Replay(usize, bool),
    /// Same id as an earlier record, different content.
    Conflict(usize, Conflict),
}

#[derive(Debug, Clone)]
struct Spec {
    /// Index into STREAMS (3 or 4 streams are used per case).
    stream: usize,
    ver: Ver,
    id: Id,
    payload: Vec<u8>,
    type_b: bool,
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Spec>),
    /// Index into STREAMS plus one stream never written.
    ReadStream(usize),
    ReadAll {
        from: u64,
        max: usize,
    },
    ReadAllPages {
        page: usize,
    },
    /// `Some(i)`: the id of an earlier record (modulo the history); `None`: unknown id.
    FindEvent(Option<usize>),
    Restart,
    /// Restart after deleting the (derived) sled index.
    RestartLosingIndex,
}

fn spec(streams: usize) -> impl Strategy<Value = Spec> {
    let ver = prop_oneof![
        4 => Just(Ver::Any),
        5 => Just(Ver::Correct),
        1 => (0u8..4).prop_map(Ver::Wrong),
    ];
    let conflict = prop_oneof![
        3 => Just(Conflict::Payload),
        1 => Just(Conflict::Stream),
        1 => Just(Conflict::EventType),
    ];
    let id = prop_oneof![
        6 => Just(Id::Fresh),
        2 => (any::<usize>(), any::<bool>()).prop_map(|(i, a)| Id::Replay(i, a)),
        1 => (any::<usize>(), conflict).prop_map(|(i, c)| Id::Conflict(i, c)),
    ];
    (
        0..streams,
        ver,
        id,
        prop::collection::vec(any::<u8>(), 0..6),
        any::<bool>(),
    )
        .prop_map(|(stream, ver, id, payload, type_b)| Spec {
            stream,
            ver,
            id,
            payload,
            type_b,
        })
}

fn op(streams: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(spec(streams), 1..=5).prop_map(Op::Append),
        2 => (0..=streams).prop_map(Op::ReadStream),
        2 => (0u64..40, 0usize..8).prop_map(|(from, max)| Op::ReadAll { from, max }),
        1 => (2usize..8).prop_map(|page| Op::ReadAllPages { page }),
        2 => prop::option::weighted(0.8, any::<usize>()).prop_map(Op::FindEvent),
        1 => Just(Op::Restart),
        1 => Just(Op::RestartLosingIndex),
    ]
}

fn ops() -> impl Strategy<Value = (usize, Vec<Op>)> {
    (3usize..=4)
        .prop_flat_map(|streams| (Just(streams), prop::collection::vec(op(streams), 1..=25)))
}

fn epoch() -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(0, 0).expect("epoch")
}

fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_micros(t.timestamp_micros()).expect("in range")
}

fn strip(mut r: StoredRecord) -> StoredRecord {
    r.recorded_at = epoch();
    r
}

fn strip_all(rs: Vec<StoredRecord>) -> Vec<StoredRecord> {
    rs.into_iter().map(strip).collect()
}

fn strip_appended(rs: &[Appended]) -> Vec<Appended> {
    rs.iter()
        .cloned()
        .map(|mut a| {
            a.recorded_at = epoch();
            a
        })
        .collect()
}

fn open(dir: &Path) -> SegmentLog {
    SegmentLog::open(dir).expect("open the segment log")
}

/// The log as the rules of a batch describe it, as plainly as possible: a
/// list of records searched from the start for every question.
#[derive(Default)]
struct Reference {
    records: Vec<StoredRecord>,
}

impl Reference {
    fn head(&self) -> u64 {
        self.records.len() as u64
    }

    fn read_stream(&self, stream: &str) -> Vec<StoredRecord> {
        self.records
            .iter()
            .filter(|r| r.stream_id == stream)
            .cloned()
            .collect()
    }

    fn read_all(&self, from: u64, max: usize) -> Vec<StoredRecord> {
        self.records
            .iter()
            .filter(|r| r.position >= from)
            .take(max)
            .cloned()
            .collect()
    }

    fn find_event(&self, id: Uuid) -> Option<StoredRecord> {
        self.records.iter().find(|r| r.event_id == id).cloned()
    }

    /// A batch is all or nothing: each record in turn is a replay (its id
    /// is stored, or came earlier in the batch, with the same stream, type,
    /// schema version and payload: answered as the original, `replayed`),
    /// a conflict (the same id with other content: `DuplicateEventId`; an
    /// `expected_version` other than the stream's version so far, counting
    /// the batch's own new records: `VersionConflict`), or new (the next
    /// version of its stream, the next position). The first conflict
    /// refuses the whole batch.
    fn append(&mut self, batch: Vec<NewRecord>) -> Result<Vec<Appended>, LogError> {
        let same = |a: &NewRecord, b: &NewRecord| {
            a.stream_id == b.stream_id
                && a.event_type == b.event_type
                && a.schema_version == b.schema_version
                && a.payload == b.payload
        };
        let time = DateTime::<Utc>::from_timestamp(self.records.len() as i64, 0).expect("in range");
        let mut new: Vec<StoredRecord> = Vec::new();
        let mut answers: Vec<Appended> = Vec::new();
        for (index, record) in batch.iter().enumerate() {
            let answer_for = |r: &StoredRecord, replayed| Appended {
                event_id: r.event_id,
                stream_id: r.stream_id.clone(),
                version: r.version,
                position: r.position,
                recorded_at: r.recorded_at,
                replayed,
            };
            if let Some(stored) = self.records.iter().find(|r| r.event_id == record.event_id) {
                let as_new = NewRecord {
                    stream_id: stored.stream_id.clone(),
                    event_id: stored.event_id,
                    event_type: stored.event_type.clone(),
                    schema_version: stored.schema_version,
                    actor: stored.actor.clone(),
                    payload: stored.payload.clone(),
                    expected_version: None,
                };
                if !same(&as_new, record) {
                    return Err(LogError::DuplicateEventId {
                        index,
                        event_id: record.event_id,
                    });
                }
                answers.push(answer_for(stored, true));
                continue;
            }
            if let Some(first) = batch[..index]
                .iter()
                .position(|r| r.event_id == record.event_id)
            {
                if !same(&batch[first], record) {
                    return Err(LogError::DuplicateEventId {
                        index,
                        event_id: record.event_id,
                    });
                }
                let mut again = answers[first].clone();
                again.replayed = true;
                answers.push(again);
                continue;
            }
            let version = self
                .records
                .iter()
                .chain(new.iter())
                .filter(|r| r.stream_id == record.stream_id)
                .count() as u64;
            if let Some(expected) = record.expected_version {
                if expected != version {
                    return Err(LogError::VersionConflict {
                        index,
                        stream_id: record.stream_id.clone(),
                        expected,
                        actual: version,
                    });
                }
            }
            let stored = StoredRecord {
                position: self.head() + new.len() as u64 + 1,
                stream_id: record.stream_id.clone(),
                version: version + 1,
                event_id: record.event_id,
                event_type: record.event_type.clone(),
                schema_version: record.schema_version,
                recorded_at: time,
                actor: record.actor.clone(),
                payload: record.payload.clone(),
            };
            answers.push(answer_for(&stored, false));
            new.push(stored);
        }
        self.records.extend(new);
        Ok(answers)
    }
}

struct Harness {
    model: Reference,
    log: Option<SegmentLog>,
    dir: tempfile::TempDir,
    /// Every record ever submitted, in order (stored or not).
    history: Vec<NewRecord>,
    next_id: u128,
    /// What was done so far, resolved, for failure messages.
    trace: Vec<String>,
}

impl Harness {
    fn log(&self) -> &SegmentLog {
        self.log.as_ref().expect("the segment log is open")
    }

    fn fresh_id(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u128(0x5eed_0000_0000_0000_0000_0000_0000_0000 | self.next_id)
    }

    fn fail(&self, what: String) -> TestCaseError {
        TestCaseError::fail(format!(
            "{what}\nsequence so far:\n  {}",
            self.trace.join("\n  ")
        ))
    }

    /// Turns abstract specs into a concrete batch, using the model's state.
    async fn resolve(&mut self, specs: &[Spec]) -> Vec<NewRecord> {
        let mut batch: Vec<NewRecord> = Vec::new();
        // Records of this batch that will be new, per stream (if it succeeds).
        let mut bumps: HashMap<String, u64> = HashMap::new();
        for spec in specs {
            let mut record = match (&spec.id, self.history.is_empty()) {
                (Id::Fresh, _) | (_, true) => NewRecord {
                    stream_id: STREAMS[spec.stream].to_string(),
                    event_id: self.fresh_id(),
                    event_type: if spec.type_b { "type_b" } else { "type_a" }.to_string(),
                    schema_version: if spec.type_b { 2 } else { 1 },
                    actor: "model".to_string(),
                    payload: spec.payload.clone(),
                    expected_version: None,
                },
                (Id::Replay(i, other_actor), false) => {
                    let mut r = self.history[i % self.history.len()].clone();
                    if *other_actor {
                        r.actor = "someone-else".to_string();
                    }
                    r
                }
                (Id::Conflict(i, how), false) => {
                    let mut r = self.history[i % self.history.len()].clone();
                    match how {
                        Conflict::Payload => r.payload.push(0xff),
                        Conflict::Stream => {
                            let at = STREAMS.iter().position(|s| *s == r.stream_id).unwrap_or(0);
                            r.stream_id = STREAMS[(at + 1) % STREAMS.len()].to_string();
                        }
                        Conflict::EventType => r.event_type.push_str("_other"),
                    }
                    r
                }
            };
            // The version the stream will be at when this record comes.
            let stored = self.model.read_stream(&record.stream_id).len() as u64;
            let earlier_new = bumps.get(&record.stream_id).copied().unwrap_or(0);
            let correct = stored + earlier_new;
            record.expected_version = match spec.ver {
                Ver::Any => None,
                Ver::Correct => Some(correct),
                Ver::Wrong(n) if n % 2 == 1 && correct > 0 => Some(correct - 1),
                Ver::Wrong(n) => Some(correct + 1 + n as u64),
            };
            let known = self.model.find_event(record.event_id).is_some()
                || batch.iter().any(|b| b.event_id == record.event_id);
            if !known {
                *bumps.entry(record.stream_id.clone()).or_default() += 1;
            }
            batch.push(record);
        }
        batch
    }

    async fn check_append(&mut self, batch: Vec<NewRecord>) -> Result<(), TestCaseError> {
        self.trace.push(format!("append {batch:?}"));
        self.history.extend(batch.iter().cloned());
        let want = self.model.append(batch.clone());
        let got = self.log().append(batch.clone()).await;
        match (&want, &got) {
            (Ok(w), Ok(g)) => {
                if strip_appended(w) != strip_appended(g) {
                    return Err(self.fail(format!(
                        "append results differ\nmodel:   {w:?}\nsegment: {g:?}"
                    )));
                }
                // recorded_at of each entry is that of the stored record (the
                // original one for a replay), in each log.
                // The segment log stores microseconds but acknowledges the
                // full-precision time (see `acknowledged_recorded_at_is_the_stored_one`),
                // so it is compared at microsecond precision here.
                for a in g {
                    let stored = self.log().find_event(a.event_id).await.unwrap();
                    if stored.map(|s| s.recorded_at) != Some(micros(a.recorded_at)) {
                        return Err(self.fail(format!(
                            "segment: appended {a:?} does not match its stored record"
                        )));
                    }
                }
                for a in w {
                    let stored = self.model.find_event(a.event_id);
                    if stored.map(|s| s.recorded_at) != Some(a.recorded_at) {
                        return Err(self.fail(format!(
                            "model: appended {a:?} does not match its stored record"
                        )));
                    }
                }
            }
            (Err(w), Err(g)) => {
                let agree = matches!(
                    (w, g),
                    (
                        LogError::VersionConflict { .. },
                        LogError::VersionConflict { .. }
                    ) | (
                        LogError::DuplicateEventId { .. },
                        LogError::DuplicateEventId { .. }
                    )
                ) && w == g;
                if !agree {
                    return Err(self.fail(format!(
                        "append errors differ\nmodel:   {w:?}\nsegment: {g:?}"
                    )));
                }
            }
            _ => {
                return Err(self.fail(format!(
                    "append outcomes differ\nmodel:   {want:?}\nsegment: {got:?}"
                )))
            }
        }
        self.trace
            .push(format!("  -> {:?}", want.map(|w| strip_appended(&w))));
        self.check_head()
    }

    fn check_head(&self) -> Result<(), TestCaseError> {
        let (w, g) = (self.model.head(), self.log().head());
        let watched = *self.log().watch_head().borrow();
        if w != g || watched != g {
            return Err(self.fail(format!(
                "heads differ: model {w}, segment {g} (watched {watched})"
            )));
        }
        Ok(())
    }

    async fn check_read_stream(&self, stream: &str) -> Result<(), TestCaseError> {
        let w = strip_all(self.model.read_stream(stream));
        let g = self.log().read_stream(stream).await.map(strip_all);
        if g.as_ref() != Ok(&w) {
            return Err(self.fail(format!(
                "read_stream({stream}) differs\nmodel:   {w:?}\nsegment: {g:?}"
            )));
        }
        Ok(())
    }

    async fn check_read_all(&self, from: u64, max: usize) -> Result<(), TestCaseError> {
        let w = strip_all(self.model.read_all(from, max));
        let g = self.log().read_all(from, max).await.map(strip_all);
        if g.as_ref() != Ok(&w) {
            return Err(self.fail(format!(
                "read_all({from}, {max}) differs\nmodel:   {w:?}\nsegment: {g:?}"
            )));
        }
        Ok(())
    }

    async fn check_pages(&self, page: usize) -> Result<(), TestCaseError> {
        let mut from = 1u64;
        loop {
            self.check_read_all(from, page).await?;
            let got = self.model.read_all(from, page);
            if got.is_empty() {
                return Ok(());
            }
            from = got.last().unwrap().position + 1;
        }
    }

    async fn check_find(&self, id: Uuid) -> Result<(), TestCaseError> {
        let w = self.model.find_event(id).map(strip);
        let g = self.log().find_event(id).await.map(|r| r.map(strip));
        if g.as_ref() != Ok(&w) {
            return Err(self.fail(format!(
                "find_event({id}) differs\nmodel:   {w:?}\nsegment: {g:?}"
            )));
        }
        Ok(())
    }

    /// Everything the logs hold, compared.
    async fn check_everything(&self) -> Result<(), TestCaseError> {
        self.check_head()?;
        self.check_read_all(0, usize::MAX).await?;
        for stream in STREAMS.iter().chain(["never-written"].iter()) {
            self.check_read_stream(stream).await?;
        }
        for r in &self.history {
            self.check_find(r.event_id).await?;
        }
        self.check_find(Uuid::from_u128(1)).await?;
        let all = self.log().read_all(1, 1000).await.unwrap();
        if !all.windows(2).all(|w| w[0].recorded_at <= w[1].recorded_at) {
            return Err(self.fail("segment: recorded_at goes back".into()));
        }
        Ok(())
    }

    async fn restart(&mut self, lose_index: bool) -> Result<(), TestCaseError> {
        self.trace.push(
            if lose_index {
                "restart (index deleted)"
            } else {
                "restart"
            }
            .into(),
        );
        let before = self.log().read_all(1, 1000).await.unwrap();
        drop(self.log.take());
        if lose_index {
            std::fs::remove_dir_all(self.dir.path().join("index")).unwrap();
        }
        self.log = Some(open(self.dir.path()));
        let after = self.log().read_all(1, 1000).await;
        if after.as_ref() != Ok(&before) {
            return Err(self.fail(format!(
                "the restart changed the log (recorded_at included)\nbefore: {before:?}\nafter:  {after:?}"
            )));
        }
        self.check_everything().await
    }

    async fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Append(specs) => {
                let batch = self.resolve(specs).await;
                self.check_append(batch).await
            }
            Op::ReadStream(i) => {
                let stream = STREAMS.get(*i).copied().unwrap_or("never-written");
                self.trace.push(format!("read_stream({stream})"));
                self.check_read_stream(stream).await
            }
            Op::ReadAll { from, max } => {
                self.trace.push(format!("read_all({from}, {max})"));
                self.check_read_all(*from, *max).await
            }
            Op::ReadAllPages { page } => {
                self.trace.push(format!("read_all pages of {page}"));
                self.check_pages(*page).await
            }
            Op::FindEvent(pick) => {
                let id = match pick {
                    Some(i) if !self.history.is_empty() => {
                        self.history[i % self.history.len()].event_id
                    }
                    _ => Uuid::from_u128(2),
                };
                self.trace.push(format!("find_event({id})"));
                self.check_find(id).await
            }
            Op::Restart => self.restart(false).await,
            Op::RestartLosingIndex => self.restart(true).await,
        }
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    let mut h = Harness {
        model: Reference::default(),
        log: Some(log),
        dir,
        history: Vec::new(),
        next_id: 0,
        trace: Vec::new(),
    };
    for op in &ops {
        h.apply(op).await?;
    }
    h.check_everything().await?;
    // And a final restart: what was acknowledged is still there.
    h.restart(false).await
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::with_cases(32)
    })]

    #[test]
    fn segment_log_agrees_with_the_reference_model((_streams, ops) in ops()) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops))?;
    }
}

/// Found by the model test: the segment log acknowledges `recorded_at` at
/// full (nanosecond) precision but stores microseconds, so the time an
/// append returns differs from the one read back, and from the one a replay
/// of the same record returns. Ignored until the segment log truncates (or
/// stores) consistently.
#[test]
fn acknowledged_recorded_at_is_the_stored_one() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path());
        for i in 0..5u8 {
            let record = openptl_log::suite::record("s", None, &[i]);
            let first = log.append(vec![record.clone()]).await.unwrap();
            let stored = log.find_event(record.event_id).await.unwrap().unwrap();
            let replay = log.append(vec![record]).await.unwrap();
            assert_eq!(first[0].recorded_at, stored.recorded_at, "ack vs stored");
            assert_eq!(first[0].recorded_at, replay[0].recorded_at, "ack vs replay");
        }
    });
}
