//! Deciding whether a new event may join a pathway (SPEC 2.11 and 3): the
//! envelope is parsed, then the event is checked against the pathway's
//! history. Nothing here writes; the caller appends only what passed.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::codes::Route;
use crate::config::RulesConfig;
use crate::error::RuleError;
use crate::event::{decode_json, EventData, EventType};
use crate::history::{effective_events, EffectiveEvent, RecordedEvent};
use crate::ids::PathwayId;

/// A client's event, parsed and shape-checked (SPEC 3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub event_id: Option<Uuid>,
    pub pathway_id: PathwayId,
    pub occurred_on: NaiveDate,
    pub expected_version: Option<u64>,
    pub data: EventData,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    #[serde(default)]
    event_id: Option<String>,
    pathway_id: String,
    #[serde(rename = "type")]
    event_type: String,
    occurred_on: String,
    #[serde(default)]
    expected_version: Option<u64>,
    #[serde(default)]
    data: Option<Value>,
}

impl NewEvent {
    /// Parses one envelope; every error names the field at fault.
    pub fn from_json(value: Value) -> Result<NewEvent, RuleError> {
        if !value.is_object() {
            return Err(RuleError::field("", "an event must be a JSON object"));
        }
        let raw: RawEnvelope = decode_json(value)?;
        let event_type =
            EventType::parse(&raw.event_type).ok_or_else(|| RuleError::UnknownEventType {
                expected: EventType::expected(),
            })?;
        let event_id = raw
            .event_id
            .map(|id| {
                Uuid::parse_str(&id).map_err(|_| RuleError::field("event_id", "must be a UUID"))
            })
            .transpose()?;
        let pathway_id = PathwayId::parse(&raw.pathway_id).ok_or_else(|| {
            RuleError::field(
                "pathway_id",
                "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
            )
        })?;
        let occurred_on = crate::date::parse(&raw.occurred_on)
            .ok_or_else(|| RuleError::field("occurred_on", "must be a date written YYYY-MM-DD"))?;
        let data = match raw.data {
            None | Some(Value::Null) => Value::Object(Default::default()),
            Some(v @ Value::Object(_)) => v,
            Some(_) => return Err(RuleError::field("data", "must be a JSON object")),
        };
        let data = EventData::from_json(event_type, data).map_err(|e| e.under("data"))?;
        Ok(NewEvent {
            event_id,
            pathway_id,
            occurred_on,
            expected_version: raw.expected_version,
            data,
        })
    }
}

/// Checks `data` dated `occurred_on` against the pathway's stored history
/// (all events known now). `today` is the service's date (Europe/London).
pub fn check_event(
    history: &[RecordedEvent],
    occurred_on: NaiveDate,
    data: &EventData,
    today: NaiveDate,
    config: &RulesConfig,
) -> Result<(), RuleError> {
    let event_type = data.event_type();
    if occurred_on > today {
        return Err(RuleError::OccurredInFuture { occurred_on, today });
    }
    if history.is_empty() {
        return match event_type {
            EventType::ReferralReceived => Ok(()),
            _ => Err(RuleError::PathwayNotStarted),
        };
    }
    if event_type == EventType::ReferralReceived {
        return Err(RuleError::PathwayExists);
    }
    let before = effective_events(history)?;
    // Corrections and voids are not effective events, so their own date is checked here.
    if event_type.is_amendment() {
        let referral_on = before.iter().find_map(|e| match *e.data {
            EventData::ReferralReceived(_) => Some(e.occurred_on),
            _ => None,
        });
        if let Some(referral_on) = referral_on.filter(|r| occurred_on < *r) {
            return Err(RuleError::OccurredBeforeReferral {
                occurred_on,
                referral_on,
                fit_window_days: config.fit.days_before_referral,
            });
        }
    }
    match data {
        EventData::EventCorrected(c) => {
            let target = amendment_target(history, &before, c.corrects, "data.corrects")?;
            if let Some(new_on) = c.new_occurred_on {
                if new_on > today {
                    return Err(RuleError::OccurredInFuture {
                        occurred_on: new_on,
                        today,
                    });
                }
            }
            if let Some(new_data) = &c.new_data {
                let corrected = EventData::from_json(target.data.event_type(), new_data.clone())
                    .map_err(|e| e.under("new_data").under("data"))?;
                // Which trust holds a pathway changes only by a transfer (ours):
                // a correction must not move it, or bypass breach allocation
                // and the sending trust's access.
                if let (EventData::ReferralReceived(before), EventData::ReferralReceived(after)) =
                    (&target.data, &corrected)
                {
                    if before.trust != after.trust {
                        return Err(RuleError::InvalidField {
                            field: "data.new_data.trust".into(),
                            problem: "cannot be corrected: a pathway changes trust only by a \
                                      `pathway_transferred` event"
                                .into(),
                        });
                    }
                }
            }
        }
        EventData::EventVoided(v) => {
            let target = amendment_target(history, &before, v.voids, "data.voids")?;
            if target.data.event_type() == EventType::ReferralReceived {
                return Err(RuleError::CannotVoidReferral);
            }
        }
        EventData::TrackingNoteAdded(_) => {}
        _ => {
            if before
                .iter()
                .any(|e| matches!(*e.data, EventData::PathwayClosed(_)))
            {
                return Err(RuleError::PathwayClosed);
            }
        }
    }
    let mut after = history.to_vec();
    after.push(RecordedEvent {
        event_id: Uuid::nil(),
        version: history.len() as u64 + 1,
        recorded_at: DateTime::<Utc>::MIN_UTC,
        occurred_on,
        data: data.clone(),
    });
    let effective = effective_events(&after)?;
    check_pathway(&effective, today, config).map_err(|rule| {
        if event_type.is_amendment() {
            RuleError::CorrectionBreaksPathway {
                rule: Box::new(rule),
            }
        } else {
            rule
        }
    })
}

/// The event a correction or void names: stored in this pathway, an ordinary
/// event (not itself an amendment) and not voided.
fn amendment_target<'a>(
    history: &'a [RecordedEvent],
    effective: &[EffectiveEvent],
    target: Uuid,
    field: &str,
) -> Result<&'a RecordedEvent, RuleError> {
    let stored = history
        .iter()
        .find(|e| e.event_id == target)
        .ok_or_else(|| RuleError::UnknownEvent {
            event_id: target.to_string(),
        })?;
    if stored.data.event_type().is_amendment() {
        return Err(RuleError::field(
            field,
            "names a correction or void: amend the original event instead",
        ));
    }
    if !effective.iter().any(|e| e.event_id == target) {
        return Err(RuleError::field(
            field,
            "names an event that has been voided",
        ));
    }
    Ok(stored)
}

/// The invariants every pathway must keep, whatever order its events came in.
pub fn check_pathway(
    events: &[EffectiveEvent],
    today: NaiveDate,
    config: &RulesConfig,
) -> Result<(), RuleError> {
    let Some((referral_on, route)) = events.iter().find_map(|e| match &*e.data {
        EventData::ReferralReceived(r) => Some((e.occurred_on, r.route)),
        _ => None,
    }) else {
        return Err(RuleError::PathwayNotStarted);
    };
    let fit_window = config.fit.days_before_referral;
    let earliest_fit = referral_on
        .checked_sub_days(Days::new(fit_window as u64))
        .unwrap_or(NaiveDate::MIN);
    let mut upgrades = 0;
    for event in events {
        let day = event.occurred_on;
        if day > today {
            return Err(RuleError::OccurredInFuture {
                occurred_on: day,
                today,
            });
        }
        let is_fit = matches!(*event.data, EventData::FitResultRecorded(_));
        if day < referral_on && !(is_fit && day >= earliest_fit) {
            return Err(RuleError::OccurredBeforeReferral {
                occurred_on: day,
                referral_on,
                fit_window_days: fit_window,
            });
        }
        match &*event.data {
            EventData::ConsultantUpgraded(_) => {
                if route != Route::Other {
                    return Err(RuleError::UpgradeNotAllowed {
                        route: route.as_str().to_string(),
                    });
                }
                upgrades += 1;
                if upgrades > 1 {
                    return Err(RuleError::AlreadyUpgraded);
                }
            }
            EventData::TreatmentStarted(_) => {
                // Same-day decisions count even when recorded after the treatment.
                let decided = events.iter().any(|e| {
                    matches!(*e.data, EventData::DecisionToTreat(_)) && e.occurred_on <= day
                });
                if !decided {
                    return Err(RuleError::TreatmentWithoutDecision);
                }
            }
            _ => {}
        }
    }
    Ok(())
}
