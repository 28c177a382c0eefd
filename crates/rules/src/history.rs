//! A pathway's stored events and the "effective" events every view is built
//! from: corrections applied, voided events removed, sorted by `occurred_on`
//! (append order within a day).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::error::RuleError;
use crate::event::{EventData, EventType};

/// One stored event of a pathway, as the rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedEvent {
    pub event_id: Uuid,
    /// 1 for the first event of the pathway.
    pub version: u64,
    pub recorded_at: DateTime<Utc>,
    pub occurred_on: NaiveDate,
    pub data: EventData,
}

/// A pathway event after every correction and void known so far. Its data
/// is borrowed from the history unless a correction replaced it.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveEvent<'a> {
    pub event_id: Uuid,
    pub version: u64,
    pub occurred_on: NaiveDate,
    pub data: std::borrow::Cow<'a, EventData>,
}

#[derive(Default)]
struct Amendment {
    occurred_on: Option<NaiveDate>,
    data: Option<Value>,
}

/// Applies corrections and voids (in append order; a later correction
/// overrides the fields an earlier one set, field by field) and sorts.
///
/// Corrections were checked against their target's type when accepted, so a
/// failure here means stored data no longer fits the rules: an error, never a
/// silent fallback.
pub fn effective_events(history: &[RecordedEvent]) -> Result<Vec<EffectiveEvent<'_>>, RuleError> {
    let mut amendments: HashMap<Uuid, Amendment> = HashMap::new();
    let mut voided: HashSet<Uuid> = HashSet::new();
    for event in history {
        match &event.data {
            EventData::EventCorrected(c) => {
                let entry = amendments.entry(c.corrects).or_default();
                if c.new_occurred_on.is_some() {
                    entry.occurred_on = c.new_occurred_on;
                }
                if c.new_data.is_some() {
                    entry.data = c.new_data.clone();
                }
            }
            EventData::EventVoided(v) => {
                voided.insert(v.voids);
            }
            _ => {}
        }
    }
    let mut effective = Vec::with_capacity(history.len());
    for event in history {
        if event.data.event_type().is_amendment() || voided.contains(&event.event_id) {
            continue;
        }
        let mut occurred_on = event.occurred_on;
        let mut data = std::borrow::Cow::Borrowed(&event.data);
        if let Some(amendment) = amendments.get(&event.event_id) {
            occurred_on = amendment.occurred_on.unwrap_or(occurred_on);
            if let Some(new_data) = &amendment.data {
                data = std::borrow::Cow::Owned(
                    EventData::from_json(data.event_type(), new_data.clone())
                        .map_err(|e| e.under("new_data").under("data"))?,
                );
            }
        }
        effective.push(EffectiveEvent {
            event_id: event.event_id,
            version: event.version,
            occurred_on,
            data,
        });
    }
    effective.sort_by_key(|e| (e.occurred_on, e.version));
    Ok(effective)
}

/// The earliest date as of which a record of type `ty`, dated
/// `occurred_on`, can change a pathway's state: its own date for an event
/// ([`crate::pathway::evaluate`] passes over events dated after its
/// `as_of`, the dates they name included), `None` for an amendment (a
/// correction or void may move or remove an event of any date). So a
/// record known later than a moment changes nothing of a view as of a
/// date before this one (issue 22's views as known at a past moment).
pub fn earliest_date_affected(ty: EventType, occurred_on: NaiveDate) -> Option<NaiveDate> {
    (!ty.is_amendment()).then_some(occurred_on)
}

/// Events as they were known at `known_at` (recorded on or before it).
pub fn known_at(history: &[RecordedEvent], known_at: DateTime<Utc>) -> &[RecordedEvent] {
    // Versions are appended in record order, so the known prefix is contiguous.
    let n = history.partition_point(|e| e.recorded_at <= known_at);
    &history[..n]
}

/// The trusts a pathway has belonged to, from its effective events: the
/// current one (after the latest transfer) and every one it ever had (the
/// referring trust and each transfer's sender and receiver), for access
/// control. `None` when there is no effective referral.
pub fn trusts(history: &[RecordedEvent]) -> Option<(String, Vec<String>)> {
    trusts_of(&effective_events(history).ok()?)
}

/// [`trusts`] from events already made effective.
pub fn trusts_of(effective: &[EffectiveEvent]) -> Option<(String, Vec<String>)> {
    let mut current: Option<String> = None;
    let mut ever: Vec<String> = Vec::new();
    for event in effective {
        let trust = match &*event.data {
            EventData::ReferralReceived(r) => r.trust.as_str(),
            EventData::PathwayTransferred(t) => t.to_trust.as_str(),
            _ => continue,
        };
        current = Some(trust.to_string());
        if !ever.iter().any(|t| t == trust) {
            ever.push(trust.to_string());
        }
    }
    current.map(|c| (c, ever))
}
