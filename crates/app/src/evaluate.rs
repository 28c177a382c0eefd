//! Evaluating one pathway: its stored records decoded for the rules, its
//! state, PTL row and version as of a date and as known at a moment. A leaf
//! that the projection, the folds and the views share.

use chrono::{DateTime, NaiveDate, Utc};
use openptl_log::{Failure, RecordRef};
use openptl_rules::{
    effective_events, evaluate, history, EffectiveEvent, EventData, EventType, PathwayState,
    PtlRow, RecordedEvent, RulesConfig,
};

use crate::AppError;

/// A pathway's state as of the projection's `today`, and its PTL row.
#[derive(Debug, Clone)]
pub struct Current {
    pub state: PathwayState,
    /// Boxed: most pathways are closed and have none.
    pub row: Option<Box<PtlRow>>,
    /// The number of events the state was evaluated from.
    pub version: u64,
}

/// A pathway's state from its history, as of `as_of`, as known at `known_at`.
pub fn evaluate_history(
    history: &[RecordedEvent],
    as_of: NaiveDate,
    known_at: Option<DateTime<Utc>>,
    config: &RulesConfig,
) -> Result<Option<PathwayState>, AppError> {
    let known = match known_at {
        Some(at) => history::known_at(history, at),
        None => history,
    };
    if known.is_empty() {
        return Ok(None);
    }
    let effective = effective_events(known).map_err(|e| {
        AppError::Internal(Failure::caused_by(
            "pathway history no longer fits the rules",
            e,
        ))
    })?;
    Ok(evaluate(&effective, as_of, config))
}

/// How many of `history`'s events were known at `known_at`.
pub fn version_at(history: &[RecordedEvent], known_at: Option<DateTime<Utc>>) -> u64 {
    match known_at {
        Some(at) => history::known_at(history, at).len() as u64,
        None => history.len() as u64,
    }
}

/// A pathway's state, PTL row and version from its history; `None` when it
/// had no referral by `as_of`, or (logged) when its history no longer fits
/// the rules.
pub fn current_of(
    history: &[RecordedEvent],
    as_of: NaiveDate,
    known_at: Option<DateTime<Utc>>,
    config: &RulesConfig,
) -> Option<Current> {
    let known = match known_at {
        Some(at) => history::known_at(history, at),
        None => history,
    };
    let effective = effective_or_logged(known)?;
    current_from(&effective, known.len() as u64, as_of, config)
}

/// A pathway's effective events, or `None` (logged, without patient data)
/// when its history no longer fits the rules.
pub(crate) fn effective_or_logged(history: &[RecordedEvent]) -> Option<Vec<EffectiveEvent<'_>>> {
    match effective_events(history) {
        Ok(effective) => Some(effective),
        Err(e) => {
            tracing::error!(error = %e, "a pathway could not be evaluated");
            None
        }
    }
}

/// The state, PTL row and version from effective events (`None` without a
/// referral by `as_of`).
pub(crate) fn current_from(
    effective: &[EffectiveEvent],
    version: u64,
    as_of: NaiveDate,
    config: &RulesConfig,
) -> Option<Current> {
    let state = evaluate(effective, as_of, config)?;
    Some(Current {
        row: PtlRow::of(&state, config).map(Box::new),
        state,
        version,
    })
}

/// Why a stored record cannot be read by this binary, if it cannot: an
/// event type it does not know, or a schema version after the one it
/// writes (an upgrade, then a downgrade). Such a record stops the
/// projection (`/readyz` says why) rather than hide its pathway: a
/// downgrade once dropped every pathway touched since the upgrade from the
/// PTL, without a word beyond a log line.
pub fn unreadable(r: RecordRef<'_>) -> Option<String> {
    let newer = |what: String| {
        Some(format!(
            "the event at position {} is {what}, written by a newer OpenPTL: run that version or a later one",
            r.position
        ))
    };
    match EventType::parse(r.event_type) {
        None => newer(format!(
            "of type {}, which this binary does not know",
            r.event_type
        )),
        Some(ty) if r.schema_version > ty.schema_version() => newer(format!(
            "{} of schema version {} (this binary reads up to {})",
            r.event_type,
            r.schema_version,
            ty.schema_version()
        )),
        Some(_) => None,
    }
}

/// Decodes one stored record for the rules.
pub fn decode(r: RecordRef<'_>) -> Result<RecordedEvent, AppError> {
    let event_type = EventType::parse(r.event_type).ok_or_else(|| {
        AppError::internal(format!(
            "position {}: unknown stored event type {}",
            r.position, r.event_type
        ))
    })?;
    let (occurred_on, data) = EventData::decode_payload(event_type, r.schema_version, r.payload)
        .map_err(|e| {
            AppError::Internal(Failure::caused_by(format!("position {}", r.position), e))
        })?;
    Ok(RecordedEvent {
        event_id: r.event_id,
        version: r.version,
        recorded_at: r.recorded_at,
        occurred_on,
        data,
    })
}
