//! Appending: parse every envelope, check the caller may write each event's
//! pathway, detect idempotent replays, check each new event against its
//! pathway's history with the rules, then append the whole batch atomically with optimistic concurrency (retrying if another writer
//! got there first). Nothing is written unless every event passed.

use std::collections::HashMap;
use std::sync::Arc;

use openptl_log::{LogError, NewRecord, StoredRecord};
use openptl_rules::{
    check_event, history, EventData, EventType, NewEvent, RecordedEvent, RuleError,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::access::{Denied, Principal};
use crate::{App, AppError};

/// The most events one request may carry (SPEC 4.1).
pub const MAX_BATCH: usize = 1000;

/// How long an append waits for the projection to show its events.
const PROJECTION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Attempts before a persistent race is reported as a conflict.
const MAX_ATTEMPTS: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppendedEvent {
    pub event_id: Uuid,
    pub pathway_id: String,
    pub version: u64,
    pub position: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AppendOutcome {
    pub appended: Vec<AppendedEvent>,
    /// Every event was already stored: nothing new was written.
    pub all_replayed: bool,
    /// How many new events of each type were written (for metrics).
    pub new_by_type: Vec<(&'static str, u64)>,
}

/// One event of the request and what became of it.
enum Slot {
    /// To be written (the next of the request's new records).
    New,
    Replay(AppendedEvent),
    SameAs(usize),
}

impl App {
    /// Appends envelopes (SPEC 3.1) as one atomic batch.
    pub async fn append(
        &self,
        envelopes: Vec<Value>,
        principal: &Principal,
        batch: bool,
    ) -> Result<AppendOutcome, AppError> {
        let started = std::time::Instant::now();
        let result = self.append_inner(envelopes, principal, batch, false).await;
        match &result {
            Ok(outcome) => {
                for (event_type, n) in &outcome.new_by_type {
                    self.metrics
                        .events_appended
                        .with_label_values(&[event_type])
                        .inc_by(*n);
                }
                self.metrics.observe_append(started.elapsed(), true);
            }
            Err(_) => self.metrics.observe_append(started.elapsed(), false),
        }
        result
    }

    /// Runs every check of [`App::append`] (parsing, access, the rules
    /// against the current history, idempotency) and writes nothing: the
    /// dry run of an import. Appended entries carry the versions the events
    /// would get and position 0.
    pub async fn check(
        &self,
        envelopes: Vec<Value>,
        principal: &Principal,
    ) -> Result<AppendOutcome, AppError> {
        self.append_inner(envelopes, principal, true, true).await
    }

    async fn append_inner(
        &self,
        envelopes: Vec<Value>,
        principal: &Principal,
        batch: bool,
        dry_run: bool,
    ) -> Result<AppendOutcome, AppError> {
        let at = |i: usize| if batch { Some(i) } else { None };
        let mut events = Vec::with_capacity(envelopes.len());
        for (i, envelope) in envelopes.into_iter().enumerate() {
            let event = NewEvent::from_json(envelope).map_err(|error| AppError::Rejected {
                index: at(i),
                error,
            })?;
            // Server-assigned ids are fixed before any attempt, so a retry keeps them.
            let id = event.event_id.unwrap_or_else(Uuid::new_v4);
            events.push((id, event));
        }
        // Lock the stripes of every pathway in the request, in order (no deadlock).
        let mut stripes: Vec<usize> = events
            .iter()
            .map(|(_, e)| self.stripe(e.pathway_id.as_str()))
            .collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.pathway_locks[stripe].lock().await);
        }
        let mut rechecked = false;
        for _ in 0..MAX_ATTEMPTS {
            let attempt = match self.try_append(&events, principal, batch, dry_run).await {
                Ok(attempt) => attempt,
                // Refused against a history the projection may not have
                // caught up with (another node's events, a start-up still
                // folding): check once more on the log as it is now.
                Err(
                    e @ (AppError::Rejected { .. }
                    | AppError::VersionConflict { .. }
                    | AppError::Forbidden { .. }),
                ) => {
                    if rechecked || self.projection.position() >= self.log.head() {
                        return Err(e);
                    }
                    rechecked = true;
                    self.caught_up(PROJECTION_WAIT).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match attempt {
                Attempt::Done(outcome) => {
                    // Answer once the projection shows the new events, so the
                    // next append (and read) of these pathways sees them.
                    let last = outcome.appended.iter().map(|a| a.position).max();
                    if let Some(last) = last {
                        if !self.projection.wait_for(last, PROJECTION_WAIT).await {
                            tracing::warn!(
                                position = last,
                                "appended and durable, but not yet projected"
                            );
                        }
                    }
                    return Ok(outcome);
                }
                // The log holds events this node has not projected yet (another
                // node's, or a catch-up after start): wait for them, then check again.
                Attempt::Raced => {
                    self.caught_up(PROJECTION_WAIT).await;
                }
            }
        }
        Err(AppError::storage(
            "the log stayed busy with conflicting appends to these pathways; retry",
        ))
    }

    fn stripe(&self, pathway_id: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        pathway_id.hash(&mut hasher);
        (hasher.finish() as usize) % self.pathway_locks.len()
    }

    async fn try_append(
        &self,
        events: &[(Uuid, NewEvent)],
        principal: &Principal,
        batch: bool,
        dry_run: bool,
    ) -> Result<Attempt, AppError> {
        let actor = principal.actor.as_str();
        let at = |i: usize| if batch { Some(i) } else { None };
        let today = self.today();
        // Histories as the projection holds them, copied (make_mut) only
        // when the request has a second event for the pathway.
        let mut histories: HashMap<&str, Arc<Vec<RecordedEvent>>> = HashMap::new();
        let mut slots: Vec<Slot> = Vec::with_capacity(events.len());
        let mut new_records: Vec<NewRecord> = Vec::with_capacity(events.len());
        let mut remaining: HashMap<&str, usize> = HashMap::new();
        for (_, event) in events {
            *remaining.entry(event.pathway_id.as_str()).or_default() += 1;
        }
        for (i, (id, event)) in events.iter().enumerate() {
            let stream = event.pathway_id.as_str();
            let left = remaining.get_mut(stream).expect("counted above");
            *left -= 1;
            let later_events = *left > 0;
            let record = NewRecord {
                stream_id: stream.to_string(),
                event_id: *id,
                event_type: event.data.event_type().as_str().to_string(),
                schema_version: event.data.schema_version(),
                actor: actor.to_string(),
                payload: event.data.encode_payload(event.occurred_on),
                expected_version: None,
            };
            // Idempotency (SPEC 3.1): the same id with the same content is the original result.
            if let Some(earlier) = events[..i].iter().position(|(other, _)| other == id) {
                if events[earlier].1.pathway_id != event.pathway_id
                    || events[earlier].1.occurred_on != event.occurred_on
                    || events[earlier].1.data != event.data
                {
                    return Err(AppError::DuplicateEventId { index: at(i) });
                }
                slots.push(Slot::SameAs(earlier));
                continue;
            }
            if !histories.contains_key(stream) {
                let history = self.projection.history(stream).await?;
                histories.insert(stream, history.unwrap_or_default());
            }
            let history = histories.get_mut(stream).expect("loaded above");
            authorise(principal, history, event).map_err(|denied| match denied {
                // Another trust's pathway answers exactly as a missing one
                // would (or, for a referral, as a taken id would).
                Denied::NotVisible => AppError::Rejected {
                    index: at(i),
                    error: if event.data.event_type() == EventType::ReferralReceived {
                        RuleError::PathwayExists
                    } else {
                        RuleError::PathwayNotStarted
                    },
                },
                Denied::Forbidden => AppError::Forbidden {
                    index: at(i),
                    reason: format!(
                        "a {} may not record `{}` on this pathway",
                        principal.role.as_str(),
                        event.data.event_type().as_str()
                    ),
                },
            })?;
            // Only now, authorised for this pathway, may the caller learn
            // whether the id is stored (and the stored event's place): a
            // replay or a duplicate of another trust's event would tell it
            // that pathway exists (decision 75). And only for a pathway
            // that exists (so is the caller's), or a referral, which starts
            // one: anything else on a pathway that does not exist is refused
            // by the rules (`pathway_not_started`) whether or not its id is
            // stored somewhere (decision 95). No replay is lost: a stored
            // event's pathway exists.
            let exists = !history.is_empty();
            let starts = event.data.event_type() == EventType::ReferralReceived;
            if event.event_id.is_some() && (exists || starts) {
                if let Some(stored) = self.log.find_event(*id).await.map_err(storage)? {
                    if !replays_stored(&stored, &record, event) {
                        return Err(AppError::DuplicateEventId { index: at(i) });
                    }
                    slots.push(Slot::Replay(AppendedEvent {
                        event_id: stored.event_id,
                        pathway_id: stored.stream_id,
                        version: stored.version,
                        position: stored.position,
                    }));
                    continue;
                }
            }
            let current = history.len() as u64;
            if let Some(expected) = event.expected_version {
                if expected != current {
                    return Err(AppError::VersionConflict {
                        index: at(i),
                        expected,
                        current,
                    });
                }
            }
            check_event(history, event.occurred_on, &event.data, today, &self.config).map_err(
                |error| AppError::Rejected {
                    index: at(i),
                    error,
                },
            )?;
            if later_events {
                Arc::make_mut(history).push(RecordedEvent {
                    event_id: *id,
                    version: current + 1,
                    recorded_at: self.clock.now(),
                    occurred_on: event.occurred_on,
                    data: event.data.clone(),
                });
            }
            new_records.push(NewRecord {
                expected_version: Some(current),
                ..record
            });
            slots.push(Slot::New);
        }

        let all_replayed = new_records.is_empty();
        let mut new_by_type: Vec<(&'static str, u64)> = Vec::new();
        for ((_, event), _) in events
            .iter()
            .zip(&slots)
            .filter(|(_, s)| matches!(s, Slot::New))
        {
            let name = event.data.event_type().as_str();
            match new_by_type.iter_mut().find(|(t, _)| *t == name) {
                Some((_, n)) => *n += 1,
                None => new_by_type.push((name, 1)),
            }
        }
        let mut stored = if all_replayed {
            Vec::new().into_iter()
        } else if dry_run {
            new_records
                .iter()
                .map(|r| openptl_log::Appended {
                    event_id: r.event_id,
                    stream_id: r.stream_id.clone(),
                    version: r.expected_version.unwrap_or(0) + 1,
                    position: 0,
                    recorded_at: self.clock.now(),
                    replayed: false,
                })
                .collect::<Vec<_>>()
                .into_iter()
        } else {
            match self.log.append(new_records).await {
                Ok(out) => out.into_iter(),
                // Another writer changed a pathway (or stored one of our ids) since we
                // read it: the checks must run again on the new history.
                Err(LogError::VersionConflict { .. } | LogError::DuplicateEventId { .. }) => {
                    return Ok(Attempt::Raced)
                }
                Err(e) => return Err(storage(e)),
            }
        };
        let mut appended: Vec<AppendedEvent> = Vec::with_capacity(slots.len());
        for slot in slots {
            let entry = match slot {
                Slot::Replay(done) => done,
                Slot::SameAs(earlier) => appended[earlier].clone(),
                Slot::New => {
                    let out = stored.next().expect("one result per appended record");
                    AppendedEvent {
                        event_id: out.event_id,
                        pathway_id: out.stream_id,
                        version: out.version,
                        position: out.position,
                    }
                }
            };
            appended.push(entry);
        }
        Ok(Attempt::Done(AppendOutcome {
            appended,
            all_replayed,
            new_by_type,
        }))
    }
}

/// Whether `principal` may append `event` to a pathway with `history`.
fn authorise(
    principal: &Principal,
    history: &[RecordedEvent],
    event: &NewEvent,
) -> Result<(), Denied> {
    let event_type = event.data.event_type();
    match history::trusts(history) {
        Some((current, ever)) => {
            principal.may_write(event_type, &current, ever.iter().map(String::as_str))
        }
        // A new pathway: the referral names its trust. Anything else is left
        // to the rules (`pathway_not_started`), which reveal nothing.
        None => match &event.data {
            EventData::ReferralReceived(r) => {
                let trust = r.trust.as_str();
                principal
                    .may_write(event_type, trust, std::iter::once(trust))
                    .map_err(|_| Denied::Forbidden)
            }
            // Read-only roles are refused whatever the pathway.
            _ => match principal.may_write(event_type, "", std::iter::empty()) {
                Err(Denied::Forbidden) => Err(Denied::Forbidden),
                _ => Ok(()),
            },
        },
    }
}

/// One try at an append: done, or beaten by a concurrent writer (try again).
enum Attempt {
    Done(AppendOutcome),
    Raced,
}

fn storage(e: LogError) -> AppError {
    AppError::from(e)
}

/// Whether a re-posted event is the stored one (SPEC 3.1). The bytes are
/// compared first; an event stored under an older schema version (SPEC 3.2)
/// is compared by what it means, so replaying a version-1 event after the
/// upgrade to version 2 is still a replay, not a `duplicate_event_id`.
fn replays_stored(stored: &StoredRecord, record: &NewRecord, event: &NewEvent) -> bool {
    if stored.same_content(record) {
        return true;
    }
    stored.stream_id == record.stream_id
        && stored.event_type == record.event_type
        && stored.schema_version != record.schema_version
        && EventType::parse(&stored.event_type)
            .and_then(|ty| {
                EventData::decode_payload(ty, stored.schema_version, &stored.payload).ok()
            })
            .is_some_and(|(day, data)| day == event.occurred_on && data == event.data)
}
