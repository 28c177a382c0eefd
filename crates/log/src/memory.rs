//! The in-memory twin of the durable log: the same semantics, no disk. Used
//! by tests and as the model the durable implementations are checked against.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{Appended, EventLog, InPlace, LogError, NewRecord, RecordRef, StoredRecord};

#[derive(Default)]
struct State {
    records: Vec<StoredRecord>,
    streams: HashMap<String, Vec<u64>>,
    by_event: HashMap<Uuid, u64>,
    /// The hash of the last record (the segment encoding's chain).
    last_hash: crate::segment::Hash,
}

impl State {
    fn store(&mut self, stored: StoredRecord) {
        self.streams
            .entry(stored.stream_id.clone())
            .or_default()
            .push(stored.position);
        self.by_event.insert(stored.event_id, stored.position);
        self.last_hash = crate::segment::record_hash(&stored, &self.last_hash);
        self.records.push(stored);
    }
}

/// The memory log's records up to the head, copied (it serves tests).
struct Copied(Vec<StoredRecord>);

impl Copied {
    fn at(&self, position: u64) -> Result<&StoredRecord, LogError> {
        position
            .checked_sub(1)
            .and_then(|i| self.0.get(i as usize))
            .ok_or_else(|| LogError::storage(format!("position {position} is not stored")))
    }
}

impl InPlace for Copied {
    fn head(&self) -> u64 {
        self.0.len() as u64
    }

    fn visit(
        &self,
        from: u64,
        to: u64,
        keep: &dyn Fn(&[u8]) -> bool,
        visit: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<(), LogError> {
        for position in from.max(1)..=to {
            let record = self.at(position)?;
            if keep(record.stream_id.as_bytes()) {
                visit(record.as_ref());
            }
        }
        Ok(())
    }

    fn visit_streams<'s>(
        &'s self,
        from: u64,
        to: u64,
        visit: &mut dyn FnMut(u64, &'s [u8]),
    ) -> Result<(), LogError> {
        for position in from.max(1)..=to {
            visit(position, self.at(position)?.stream_id.as_bytes());
        }
        Ok(())
    }

    fn visit_positions(
        &self,
        positions: &[u64],
        visit: &mut dyn FnMut(RecordRef<'_>),
    ) -> Result<(), LogError> {
        for position in positions {
            visit(self.at(*position)?.as_ref());
        }
        Ok(())
    }
}

/// A log held in memory; everything is lost with the process.
pub struct MemoryLog {
    // One mutex: appends are short and a batch must be atomic.
    state: Mutex<State>,
    head: watch::Sender<u64>,
    /// What stamps a record's `recorded_at` (the wall clock unless set).
    clock: Option<Stamp>,
}

/// A clock a [`MemoryLog`] stamps records with.
pub type Stamp = Box<dyn Fn() -> DateTime<Utc> + Send + Sync>;

impl Default for MemoryLog {
    fn default() -> Self {
        MemoryLog {
            state: Mutex::new(State::default()),
            head: watch::channel(0).0,
            clock: None,
        }
    }
}

impl MemoryLog {
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }

    /// A log that stamps records by `clock` instead of the wall clock (a
    /// test's days move by its own clock, and so do its records' stamps).
    /// Stamps still never go back along the log.
    pub fn stamped_by(clock: Stamp) -> MemoryLog {
        MemoryLog {
            clock: Some(clock),
            ..MemoryLog::default()
        }
    }
}

/// Checks a batch against the current state without changing it: which
/// records are replays, and the version each new record will get.
/// Shared by every implementation so they agree on the rules of a batch.
pub fn plan_batch(
    batch: &[NewRecord],
    stream_version: impl Fn(&str) -> u64,
    stored_event: impl Fn(&Uuid) -> Option<StoredRecord>,
) -> Result<Vec<Planned>, LogError> {
    let mut planned: Vec<Planned> = Vec::with_capacity(batch.len());
    let mut versions: HashMap<&str, u64> = HashMap::new();
    let mut first_with_id: HashMap<Uuid, usize> = HashMap::with_capacity(batch.len());
    for (index, record) in batch.iter().enumerate() {
        let earlier = match first_with_id.entry(record.event_id) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(index);
                None
            }
        };
        if let Some(existing) = stored_event(&record.event_id) {
            if !existing.same_content(record) {
                return Err(LogError::DuplicateEventId {
                    index,
                    event_id: record.event_id,
                });
            }
            planned.push(Planned::Replay(existing));
            continue;
        }
        if let Some(earlier) = earlier {
            if !same_new_content(&batch[earlier], record) {
                return Err(LogError::DuplicateEventId {
                    index,
                    event_id: record.event_id,
                });
            }
            planned.push(Planned::SameAs(earlier));
            continue;
        }
        let current = *versions
            .entry(record.stream_id.as_str())
            .or_insert_with(|| stream_version(&record.stream_id));
        if let Some(expected) = record.expected_version {
            if expected != current {
                return Err(LogError::VersionConflict {
                    index,
                    stream_id: record.stream_id.clone(),
                    expected,
                    actual: current,
                });
            }
        }
        versions.insert(record.stream_id.as_str(), current + 1);
        planned.push(Planned::New {
            version: current + 1,
        });
    }
    Ok(planned)
}

/// Checks records to store verbatim after `head`: positions follow on from
/// it, each stream's versions from `stream_version`, event ids are new (in
/// the log, by `stored`, and within the batch). Shared by every backend.
pub fn check_verbatim(
    records: &[StoredRecord],
    head: u64,
    stream_version: impl Fn(&str) -> u64,
    stored: impl Fn(&Uuid) -> bool,
) -> Result<(), LogError> {
    let mut versions: HashMap<&str, u64> = HashMap::new();
    let mut ids: std::collections::HashSet<Uuid> = std::collections::HashSet::new();
    for (index, r) in records.iter().enumerate() {
        if r.position != head + 1 + index as u64 {
            return Err(LogError::storage(format!(
                "verbatim record {index} has position {}, the log expects {}",
                r.position,
                head + 1 + index as u64
            )));
        }
        let current = *versions
            .entry(r.stream_id.as_str())
            .or_insert_with(|| stream_version(&r.stream_id));
        if r.version != current + 1 {
            return Err(LogError::VersionConflict {
                index,
                stream_id: r.stream_id.clone(),
                expected: r.version - 1,
                actual: current,
            });
        }
        versions.insert(r.stream_id.as_str(), r.version);
        if !ids.insert(r.event_id) || stored(&r.event_id) {
            return Err(LogError::DuplicateEventId {
                index,
                event_id: r.event_id,
            });
        }
    }
    Ok(())
}

fn same_new_content(a: &NewRecord, b: &NewRecord) -> bool {
    a.stream_id == b.stream_id
        && a.event_type == b.event_type
        && a.schema_version == b.schema_version
        && a.payload == b.payload
}

/// Turns a planned batch into its answers, giving each new record the next
/// position and handing it to `store`. Shared by every implementation.
pub fn apply_plan(
    batch: Vec<NewRecord>,
    plan: Vec<Planned>,
    position: &mut u64,
    recorded_at: chrono::DateTime<Utc>,
    mut store: impl FnMut(StoredRecord),
) -> Vec<Appended> {
    let mut out: Vec<Appended> = Vec::with_capacity(batch.len());
    for (record, planned) in batch.into_iter().zip(plan) {
        match planned {
            Planned::Replay(existing) => out.push(Appended::of(&existing, true)),
            Planned::SameAs(earlier) => {
                let first = out[earlier].clone();
                out.push(Appended {
                    replayed: true,
                    ..first
                });
            }
            Planned::New { version } => {
                *position += 1;
                let stored = StoredRecord {
                    position: *position,
                    stream_id: record.stream_id,
                    version,
                    event_id: record.event_id,
                    event_type: record.event_type,
                    schema_version: record.schema_version,
                    recorded_at,
                    actor: record.actor,
                    payload: record.payload,
                };
                out.push(Appended::of(&stored, false));
                store(stored);
            }
        }
    }
    out
}

/// The fate of one record of a batch.
#[derive(Debug, Clone)]
pub enum Planned {
    /// Already stored with the same content.
    Replay(StoredRecord),
    /// Repeats an earlier record of the same batch.
    SameAs(usize),
    /// Will be appended with this stream version.
    New { version: u64 },
}

#[async_trait]
impl EventLog for MemoryLog {
    async fn append(&self, batch: Vec<NewRecord>) -> Result<Vec<Appended>, LogError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let plan = plan_batch(
            &batch,
            |stream| state.streams.get(stream).map_or(0, |v| v.len() as u64),
            |id| {
                state
                    .by_event
                    .get(id)
                    .map(|p| state.records[(*p - 1) as usize].clone())
            },
        )?;
        let last_time = state.records.last().map(|r| r.recorded_at);
        // Microseconds, as the durable logs store them.
        let wall = self.clock.as_ref().map_or_else(Utc::now, |clock| clock());
        let now = DateTime::<Utc>::from_timestamp_micros(wall.timestamp_micros())
            .expect("now is in range");
        let recorded_at = last_time.map_or(now, |last| now.max(last));
        let mut position = state.records.len() as u64;
        let out = apply_plan(batch, plan, &mut position, recorded_at, |stored| {
            state.store(stored)
        });
        let head = state.records.len() as u64;
        drop(state);
        self.head.send_replace(head);
        Ok(out)
    }

    async fn append_verbatim(&self, records: Vec<StoredRecord>) -> Result<(), LogError> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        check_verbatim(
            &records,
            state.records.len() as u64,
            |s| state.streams.get(s).map_or(0, |v| v.len() as u64),
            |id| state.by_event.contains_key(id),
        )?;
        for stored in records {
            state.store(stored);
        }
        let head = state.records.len() as u64;
        drop(state);
        self.head.send_replace(head);
        Ok(())
    }

    async fn read_stream(&self, stream_id: &str) -> Result<Vec<StoredRecord>, LogError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(state
            .streams
            .get(stream_id)
            .map(|positions| {
                positions
                    .iter()
                    .map(|p| state.records[(*p - 1) as usize].clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn read_positions(&self, positions: &[u64]) -> Result<Vec<StoredRecord>, LogError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        positions
            .iter()
            .map(|p| {
                p.checked_sub(1)
                    .and_then(|i| state.records.get(i as usize))
                    .cloned()
                    .ok_or_else(|| LogError::storage(format!("position {p} is not stored")))
            })
            .collect()
    }

    async fn read_all(&self, from: u64, max: usize) -> Result<Vec<StoredRecord>, LogError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let start = from.max(1) as usize - 1;
        Ok(state
            .records
            .iter()
            .skip(start)
            .take(max)
            .cloned()
            .collect())
    }

    fn in_place(&self) -> Option<Result<Box<dyn InPlace + '_>, LogError>> {
        let records = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .records
            .clone();
        Some(Ok(Box::new(Copied(records))))
    }

    async fn find_event(&self, event_id: Uuid) -> Result<Option<StoredRecord>, LogError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(state
            .by_event
            .get(&event_id)
            .map(|p| state.records[(*p - 1) as usize].clone()))
    }

    fn head(&self) -> u64 {
        *self.head.borrow()
    }

    async fn chain_head(&self) -> Result<Option<crate::ChainHead>, LogError> {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(Some(crate::ChainHead {
            position: state.records.len() as u64,
            hash: state.last_hash,
        }))
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_log_passes_the_shared_suite() {
        crate::suite::run_all(|| async { super::MemoryLog::new() }).await;
    }
}
