//! Reading pathways: the pathway view (SPEC 4.2) as of a date and as known at
//! a moment, and the stored history with who corrected or voided what.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_log::StoredRecord;
use openptl_rules::{EventData, EventType, PathwayState, RecordedEvent};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::access::Principal;
use crate::clock::london_today;
use crate::evaluate::{decode, evaluate_history, version_at};
use crate::projection::{PathwayEntry, ProjectionData};
use crate::{App, AppError};

/// How long a read waits for `min_position` before answering anyway.
const MIN_POSITION_WAIT: Duration = Duration::from_secs(5);

/// Options of a pathway read.
#[derive(Debug, Clone, Default)]
pub struct PathwayQuery {
    /// Evaluate the clocks on this date (default: today).
    pub as_of: Option<NaiveDate>,
    /// Ignore events recorded after this moment (default: now).
    pub known_at: Option<DateTime<Utc>>,
    /// Read only once the log has reached this position (read-your-writes).
    pub min_position: Option<u64>,
}

/// The pathway view of SPEC 4.2. Its `Debug` leaves the NHS number (and
/// the state) out, so no log line or panic can print it.
#[derive(Clone, Serialize)]
pub struct PathwayView {
    pub pathway_id: String,
    pub version: u64,
    pub nhs_number: String,
    #[serde(flatten)]
    pub state: PathwayState,
}

impl std::fmt::Debug for PathwayView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PathwayView")
            .field("pathway_id", &self.pathway_id)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// One stored event with its metadata and what later amended it. Its
/// `Debug` leaves the payload out (a referral's holds the NHS number).
#[derive(Clone, Serialize)]
pub struct EventView {
    pub event_id: Uuid,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(with = "openptl_rules::date")]
    pub occurred_on: NaiveDate,
    pub data: Value,
    pub recorded_at: DateTime<Utc>,
    pub actor: String,
    pub version: u64,
    pub position: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub corrected_by: Vec<Amendment>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voided_by: Option<Amendment>,
}

impl std::fmt::Debug for EventView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventView")
            .field("event_id", &self.event_id)
            .field("event_type", &self.event_type)
            .field("occurred_on", &self.occurred_on)
            .field("version", &self.version)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

/// Who amended an event, when and why.
#[derive(Debug, Clone, Serialize)]
pub struct Amendment {
    pub event_id: Uuid,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
    pub reason: String,
}

impl App {
    /// Waits (bounded) until the projection shows `min_position`.
    pub async fn wait_for(&self, min_position: Option<u64>) {
        if let Some(min) = min_position {
            self.projection.wait_for(min, MIN_POSITION_WAIT).await;
        }
    }

    /// The date a query evaluates clocks on: `as_of`, else the London date of
    /// `known_at` (what the service showed then), else today.
    pub fn as_of(&self, as_of: Option<NaiveDate>, known_at: Option<DateTime<Utc>>) -> NaiveDate {
        as_of.unwrap_or_else(|| known_at.map_or_else(|| self.today(), london_today))
    }

    /// The pathway view as of a date, as known at a moment (its NHS number
    /// masked for a role that does not see them).
    pub async fn pathway(
        &self,
        pathway_id: &str,
        query: &PathwayQuery,
        principal: &Principal,
    ) -> Result<PathwayView, AppError> {
        self.wait_for(query.min_position).await;
        let as_of = self.as_of(query.as_of, query.known_at);
        let fresh = {
            let data = self.projection.read();
            readable(&data, pathway_id, principal)?;
            if data.today == Some(as_of) && query.known_at.is_none() {
                data.state_of(pathway_id, self.projection.packer())?
                    .map(|current| (current.state, current.version))
            } else {
                None
            }
        };
        // The version is the one the state was evaluated from, so a client
        // using it as `expected_version` acts on what it saw.
        let (state, entry_version) = match fresh {
            Some(fresh) => fresh,
            None => {
                let history = self
                    .projection
                    .history(pathway_id)
                    .await?
                    .ok_or(AppError::PathwayNotFound)?;
                let state = evaluate_history(&history, as_of, query.known_at, &self.config)?
                    .ok_or(AppError::PathwayNotFound)?;
                (state, version_at(&history, query.known_at))
            }
        };
        self.audit(principal, "pathway", Some(pathway_id), None)?;
        let nhs_number = if principal.sees_nhs_numbers() {
            state.nhs_number.as_str().to_string()
        } else {
            crate::views::mask(state.nhs_number.as_str())
        };
        Ok(PathwayView {
            pathway_id: pathway_id.to_string(),
            version: entry_version,
            nhs_number,
            state,
        })
    }

    /// The stored history of a pathway, oldest first, with amendments shown
    /// (NHS numbers in the events' data masked for a role that does not see
    /// them).
    pub async fn pathway_events(
        &self,
        pathway_id: &str,
        min_position: Option<u64>,
        principal: &Principal,
    ) -> Result<Vec<EventView>, AppError> {
        self.wait_for(min_position).await;
        readable(&self.projection.read(), pathway_id, principal)?;
        let records = self.projection.records(pathway_id).await?;
        let events: Vec<(RecordedEvent, &StoredRecord)> = records
            .iter()
            .map(|r| Ok((decode(r.as_ref())?, r)))
            .collect::<Result<_, AppError>>()?;
        let mut views: Vec<EventView> = events
            .iter()
            .map(|(event, stored)| EventView {
                event_id: event.event_id,
                event_type: event.data.event_type(),
                occurred_on: event.occurred_on,
                data: event.data.to_json(),
                recorded_at: event.recorded_at,
                actor: stored.actor.clone(),
                version: event.version,
                position: stored.position,
                corrected_by: Vec::new(),
                voided_by: None,
            })
            .collect();
        for (event, stored) in &events {
            let (target, reason, voids) = match &event.data {
                EventData::EventCorrected(c) => (c.corrects, &c.reason, false),
                EventData::EventVoided(v) => (v.voids, &v.reason, true),
                _ => continue,
            };
            let amendment = Amendment {
                event_id: event.event_id,
                actor: stored.actor.clone(),
                recorded_at: event.recorded_at,
                reason: reason.clone(),
            };
            if let Some(view) = views.iter_mut().find(|v| v.event_id == target) {
                if voids {
                    view.voided_by = Some(amendment);
                } else {
                    view.corrected_by.push(amendment);
                }
            }
        }
        if !principal.sees_nhs_numbers() {
            for view in &mut views {
                mask_nhs_numbers(&mut view.data);
            }
        }
        self.audit(
            principal,
            "pathway_events",
            Some(pathway_id),
            Some(views.len()),
        )?;
        Ok(views)
    }
}

/// Masks every `nhs_number` in an event's data, however deep (a referral's,
/// or one a correction's `new_data` carries).
fn mask_nhs_numbers(data: &mut Value) {
    match data {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match value {
                    Value::String(number) if key == "nhs_number" => {
                        *number = crate::views::mask(number);
                    }
                    other => mask_nhs_numbers(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask_nhs_numbers),
        _ => {}
    }
}

impl App {
    /// Whether `principal` may read the pathway (false when it is unknown
    /// to the projection so far).
    pub fn may_read(&self, pathway_id: &str, principal: &Principal) -> bool {
        readable(&self.projection.read(), pathway_id, principal).is_ok()
    }
}

/// The pathway, if it exists and `principal` may read it; otherwise "not
/// found" either way, so existence is not leaked.
fn readable<'a>(
    data: &'a ProjectionData,
    pathway_id: &str,
    principal: &Principal,
) -> Result<&'a PathwayEntry, AppError> {
    let entry = data
        .pathways
        .get(pathway_id)
        .ok_or(AppError::PathwayNotFound)?;
    // The one definition of a pathway's trusts (`history::trusts`), shared
    // with the append path's check, kept by the projection.
    let visible = entry
        .trusts
        .as_ref()
        .is_some_and(|t| principal.may_read_pathway(t.ever.iter().map(|t| &**t)));
    if visible {
        Ok(entry)
    } else {
        Err(AppError::PathwayNotFound)
    }
}
