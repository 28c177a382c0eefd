//! Reading pathways: the pathway view (SPEC 4.2) as of a date and as known at
//! a moment, and the stored history with who corrected or voided what.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use openptl_log::StoredRecord;
use openptl_rules::{
    effective_events, evaluate, history, EventData, EventType, PathwayState, RecordedEvent,
};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

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

/// The pathway view of SPEC 4.2.
#[derive(Debug, Clone, Serialize)]
pub struct PathwayView {
    pub pathway_id: String,
    pub version: u64,
    pub nhs_number: String,
    #[serde(flatten)]
    pub state: PathwayState,
}

/// One stored event with its metadata and what later amended it.
#[derive(Debug, Clone, Serialize)]
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

/// Who amended an event, when and why.
#[derive(Debug, Clone, Serialize)]
pub struct Amendment {
    pub event_id: Uuid,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
    pub reason: String,
}

/// Decodes a stream's stored records for the rules.
pub(crate) fn decode_stream(records: &[StoredRecord]) -> Result<Vec<RecordedEvent>, AppError> {
    records
        .iter()
        .map(|r| {
            let event_type = EventType::parse(&r.event_type).ok_or_else(|| {
                AppError::Internal(format!(
                    "position {}: unknown stored event type {}",
                    r.position, r.event_type
                ))
            })?;
            let (occurred_on, data) =
                EventData::decode_payload(event_type, r.schema_version, &r.payload)
                    .map_err(|e| AppError::Internal(format!("position {}: {e}", r.position)))?;
            Ok(RecordedEvent {
                event_id: r.event_id,
                version: r.version,
                recorded_at: r.recorded_at,
                occurred_on,
                data,
            })
        })
        .collect()
}

impl App {
    async fn wait_for(&self, min_position: Option<u64>) {
        let Some(min) = min_position else { return };
        let mut head = self.log.watch_head();
        let _ = tokio::time::timeout(MIN_POSITION_WAIT, head.wait_for(|h| *h >= min)).await;
    }

    async fn load(
        &self,
        pathway_id: &str,
    ) -> Result<(Vec<StoredRecord>, Vec<RecordedEvent>), AppError> {
        let stored = self
            .log
            .read_stream(pathway_id)
            .await
            .map_err(|e| AppError::Storage(e.to_string()))?;
        if stored.is_empty() {
            return Err(AppError::PathwayNotFound);
        }
        let decoded = decode_stream(&stored)?;
        Ok((stored, decoded))
    }

    /// The pathway view as of a date, as known at a moment.
    pub async fn pathway(
        &self,
        pathway_id: &str,
        query: &PathwayQuery,
    ) -> Result<PathwayView, AppError> {
        self.wait_for(query.min_position).await;
        let (_, history) = self.load(pathway_id).await?;
        let known = match query.known_at {
            Some(at) => history::known_at(&history, at),
            None => &history[..],
        };
        if known.is_empty() {
            return Err(AppError::PathwayNotFound);
        }
        let effective = effective_events(known).map_err(|e| AppError::Internal(e.to_string()))?;
        let as_of = query.as_of.unwrap_or_else(|| self.today());
        let state = evaluate(&effective, as_of, &self.config).ok_or(AppError::PathwayNotFound)?;
        Ok(PathwayView {
            pathway_id: pathway_id.to_string(),
            version: known.len() as u64,
            nhs_number: state.nhs_number.as_str().to_string(),
            state,
        })
    }

    /// The stored history of a pathway, oldest first, with amendments shown.
    pub async fn pathway_events(
        &self,
        pathway_id: &str,
        min_position: Option<u64>,
    ) -> Result<Vec<EventView>, AppError> {
        self.wait_for(min_position).await;
        let (stored, history) = self.load(pathway_id).await?;
        let mut views: Vec<EventView> = stored
            .iter()
            .zip(&history)
            .map(|(record, event)| EventView {
                event_id: record.event_id,
                event_type: event.data.event_type(),
                occurred_on: event.occurred_on,
                data: event.data.to_json(),
                recorded_at: record.recorded_at,
                actor: record.actor.clone(),
                version: record.version,
                position: record.position,
                corrected_by: Vec::new(),
                voided_by: None,
            })
            .collect();
        for (record, event) in stored.iter().zip(&history) {
            let (target, reason, voids) = match &event.data {
                EventData::EventCorrected(c) => (c.corrects, &c.reason, false),
                EventData::EventVoided(v) => (v.voids, &v.reason, true),
                _ => continue,
            };
            let amendment = Amendment {
                event_id: record.event_id,
                actor: record.actor.clone(),
                recorded_at: record.recorded_at,
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
        Ok(views)
    }
}
