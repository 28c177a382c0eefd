//! Deciding whether a new event may join a pathway (SPEC 2.11 and 3): the
//! envelope is parsed, then the event is checked against the pathway's
//! history. Nothing here writes; the caller appends only what passed.

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use crate::codes::{DiagnosisOutcome, Route};
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
            // A transfer moves a pathway to another trust (decision 186):
            // to the one holding it on that day it would count a handover
            // that never happened.
            if let EventData::PathwayTransferred(t) = data {
                // The trust holding it that day, as the fold says (SPEC 2.4).
                let holding = crate::evaluate(&before, occurred_on, config)
                    .map(|state| crate::d31::trust_on(&state, occurred_on));
                if holding == Some(t.to_trust) {
                    return Err(RuleError::field(
                        "data.to_trust",
                        format!(
                            "is the trust holding the pathway on {occurred_on} already: a transfer names the trust it moves to"
                        ),
                    ));
                }
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
    // What older rules let in stays, as long as the new event adds no more
    // of it: before schema version 2 a second first treatment was accepted
    // (and ignored, decision 85); before decision 174 an upgrade after the
    // first treatment or the ruling out, and before decision 192 one of
    // their day recorded after them; before decision 197 a closure dated
    // before events recorded earlier.
    let firsts_before = first_treatments(&before);
    let tolerated = Tolerated {
        repeated_first_treatment: firsts_before > 1
            && first_treatments(&effective) <= firsts_before,
        late_upgrade: late_upgrade(&before).is_some(),
        treated_before_ecad: treated_before_ecad(&before).is_some(),
        after_closure: after_closure(&before).len(),
    };
    check_pathway_with(&effective, today, config, tolerated).map_err(|rule| {
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

/// How many first `treatment_started` the events hold: more than one only
/// on a pathway recorded before SPEC 2.12.
fn first_treatments(events: &[EffectiveEvent]) -> usize {
    events
        .iter()
        .filter(
            |e| matches!(&*e.data, EventData::TreatmentStarted(t) if t.subsequent_plan().is_none()),
        )
        .count()
}

/// An upgrade folded after the first treatment started or after cancer
/// was ruled out (decisions 174, 192): the 62-day clock it would start
/// could never stop. Events fold by date, then in the order they were
/// recorded (SPEC 3.2), so on the same day the upgrade must have been
/// recorded first.
fn late_upgrade(events: &[EffectiveEvent]) -> Option<RuleError> {
    // Where each event folds: its date, then its place in the history.
    let (upgraded_at, upgrade) = events
        .iter()
        .enumerate()
        .find(|(_, e)| matches!(*e.data, EventData::ConsultantUpgraded(_)))?;
    let upgraded_on = upgrade.occurred_on;
    let first = |matches: fn(&EventData) -> bool| {
        events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches(&e.data))
            .map(|(at, e)| (e.occurred_on, at))
            .min()
    };
    let treated_on =
        first(|d| matches!(d, EventData::TreatmentStarted(t) if t.subsequent_plan().is_none()));
    let ruled_out_on = first(
        |d| matches!(d, EventData::DiagnosisCommunicated(c) if c.outcome == DiagnosisOutcome::CancerRuledOut),
    );
    [
        (treated_on, "the first treatment started"),
        (ruled_out_on, "cancer was ruled out"),
    ]
    .into_iter()
    .filter_map(|(at, what)| Some((at?, what)))
    .filter(|(at, _)| *at < (upgraded_on, upgraded_at))
    .min()
    .map(|((stopped_on, _), what)| RuleError::UpgradeAfterStop {
        upgraded_on,
        stopped_on,
        what: what.to_string(),
    })
}

/// The events dated after the pathway's closure, each as its refusal, the
/// earliest first (decision 197). SPEC 3.2 refuses every event but
/// tracking notes, corrections and voids on a closed pathway, so recorded
/// in date order none could stand; a closure dated before events already
/// recorded, or a correction moving one past the closure (or the closure
/// before it), would leave a history the SPEC refuses in date order, and
/// the fold passes over the clock events of a closed pathway (a treatment
/// leaves both standards).
fn after_closure(events: &[EffectiveEvent]) -> Vec<RuleError> {
    let Some(closed_on) = events
        .iter()
        .filter(|e| matches!(*e.data, EventData::PathwayClosed(_)))
        .map(|e| e.occurred_on)
        .min()
    else {
        return Vec::new();
    };
    let mut after: Vec<_> = events
        .iter()
        .filter(|e| e.occurred_on > closed_on)
        .filter(|e| {
            !matches!(
                *e.data,
                EventData::TrackingNoteAdded(_) | EventData::PathwayClosed(_)
            )
        })
        .map(|e| (e.occurred_on, e.data.event_type()))
        .collect();
    after.sort_by_key(|(occurred_on, _)| *occurred_on);
    after
        .into_iter()
        .map(|(occurred_on, event_type)| RuleError::ClosedBeforeEvent {
            closed_on,
            event_type: event_type.as_str().to_string(),
            occurred_on,
        })
        .collect()
}

/// A subsequent treatment dated before the earliest clinically appropriate
/// date of the decision in effect for its plan (the latest decision of that
/// plan dated on or before it), if the pathway holds one: its period would
/// start after it stopped (decision 181).
fn treated_before_ecad(events: &[EffectiveEvent]) -> Option<RuleError> {
    events.iter().find_map(|treatment| {
        let EventData::TreatmentStarted(t) = &*treatment.data else {
            return None;
        };
        let plan = t.subsequent_plan()?;
        let ecad = events
            .iter()
            .filter(|e| e.occurred_on <= treatment.occurred_on)
            .filter_map(|e| match &*e.data {
                EventData::DecisionToTreat(d) if d.subsequent_plan() == Some(plan) => {
                    Some((e.occurred_on, d.earliest_clinically_appropriate_date))
                }
                _ => None,
            })
            .max_by_key(|(decided_on, _)| *decided_on)?
            .1?;
        (ecad > treatment.occurred_on).then(|| {
            RuleError::field(
                "occurred_on",
                format!(
                    "is before the earliest clinically appropriate date of `{plan}` ({ecad}): \
                     its treatment starts on or after it. Correct this date, or record the \
                     decision again with the ECAD it had"
                ),
            )
        })
    })
}

/// What a pathway recorded under older rules may hold and keep (decisions
/// 85, 174, 181 and 197): refused when an event brings it, not on every
/// later event.
#[derive(Clone, Copy, Default)]
struct Tolerated {
    repeated_first_treatment: bool,
    late_upgrade: bool,
    treated_before_ecad: bool,
    /// How many events were dated after the closure.
    after_closure: usize,
}

/// The invariants every pathway must keep, whatever order its events came in.
pub fn check_pathway(
    events: &[EffectiveEvent],
    today: NaiveDate,
    config: &RulesConfig,
) -> Result<(), RuleError> {
    check_pathway_with(events, today, config, Tolerated::default())
}

fn check_pathway_with(
    events: &[EffectiveEvent],
    today: NaiveDate,
    config: &RulesConfig,
    tolerated: Tolerated,
) -> Result<(), RuleError> {
    if let (Some(late), false) = (late_upgrade(events), tolerated.late_upgrade) {
        return Err(late);
    }
    if let (Some(early), false) = (treated_before_ecad(events), tolerated.treated_before_ecad) {
        return Err(early);
    }
    let after = after_closure(events);
    if let (Some(late), true) = (after.first(), after.len() > tolerated.after_closure) {
        return Err(late.clone());
    }
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
    // Same-day decisions count even when recorded after the treatment.
    let decided_by = |day: NaiveDate, plan: Option<&str>| {
        events.iter().any(|e| {
            matches!(&*e.data, EventData::DecisionToTreat(d) if d.subsequent_plan() == plan)
                && e.occurred_on <= day
        })
    };
    let first_treated_on = events
        .iter()
        .filter(
            |e| matches!(&*e.data, EventData::TreatmentStarted(t) if t.subsequent_plan().is_none()),
        )
        .map(|e| e.occurred_on)
        .min();
    let mut upgrades = 0;
    let mut first_started = false;
    let mut started_plans: Vec<&str> = Vec::new();
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
            EventData::DecisionToTreat(d)
                if d.earliest_clinically_appropriate_date
                    .is_some_and(|ecad| ecad < day) =>
            {
                return Err(RuleError::field(
                    "data.earliest_clinically_appropriate_date",
                    format!("must be on or after the decision's date ({day})"),
                ));
            }
            // One name, one period: the first period's name is never a
            // subsequent plan's (decision 86), so a declined offer naming it
            // means one period only.
            EventData::DecisionToTreat(d) if d.plan_id.is_some() => {
                let plan = d.plan_id.as_deref();
                let clash = events.iter().any(|e| {
                    matches!(&*e.data, EventData::DecisionToTreat(other)
                        if other.plan_id.as_deref() == plan && other.kind() != d.kind())
                });
                if clash {
                    return Err(RuleError::field(
                        "data.plan_id",
                        "already names another treatment period of this pathway (the first \
                         treatment's name is never a subsequent plan's): give each period its own",
                    ));
                }
            }
            EventData::TreatmentOfferDeclined(t) => {
                if let Some(plan) = t.plan_id.as_deref() {
                    // Any decision's plan, first or subsequent (SPEC 2.12).
                    let known = events.iter().any(|e| {
                        matches!(&*e.data, EventData::DecisionToTreat(d) if d.plan_id.as_deref() == Some(plan))
                    });
                    if !known {
                        return Err(RuleError::UnknownPlan {
                            plan_id: plan.to_string(),
                        });
                    }
                }
            }
            EventData::TreatmentStarted(t) => {
                let plan = t.subsequent_plan();
                if !decided_by(day, plan) {
                    return Err(RuleError::TreatmentWithoutDecision);
                }
                match plan {
                    None => {
                        if first_started && !tolerated.repeated_first_treatment {
                            return Err(RuleError::TreatmentAlreadyStarted {
                                which: "The first treatment".to_string(),
                                plan_id: None,
                            });
                        }
                        first_started = true;
                    }
                    Some(plan) => {
                        if first_treated_on.is_none_or(|first| first > day) {
                            return Err(RuleError::SubsequentBeforeFirstTreatment {
                                plan_id: plan.to_string(),
                            });
                        }
                        if started_plans.contains(&plan) {
                            return Err(RuleError::TreatmentAlreadyStarted {
                                which: format!("The subsequent treatment `{plan}`"),
                                plan_id: Some(plan.to_string()),
                            });
                        }
                        started_plans.push(plan);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 4, d).unwrap()
    }

    fn data(ty: EventType, value: serde_json::Value) -> EventData {
        EventData::from_json(ty, value).unwrap()
    }

    /// A breast referral on day 1, decided on day 2, treated on day 3.
    fn treated_breast() -> [(NaiveDate, EventData); 3] {
        [
            (
                day(1),
                data(
                    EventType::ReferralReceived,
                    json!({"nhs_number": "9434765919", "trust": "RXH", "tumour_site": "breast", "route": "urgent_suspected_cancer"}),
                ),
            ),
            (
                day(2),
                data(EventType::DecisionToTreat, json!({"modality": "surgery"})),
            ),
            (
                day(3),
                data(EventType::TreatmentStarted, json!({"modality": "surgery"})),
            ),
        ]
    }

    /// A pathway recorded before SPEC 2.12 may hold two first treatments
    /// (then accepted and ignored): it still takes every other event, but
    /// not a third first treatment (decision 85).
    #[test]
    fn a_pathway_with_a_repeated_first_treatment_from_before_stays_usable() {
        let events = treated_breast().into_iter().chain([(
            day(4),
            data(EventType::TreatmentStarted, json!({"modality": "surgery"})),
        )]);
        let mut history = recorded(events);
        let config = RulesConfig::defaults();
        let today = day(30);
        let check = |on: NaiveDate, d: EventData| check_event(&history, on, &d, today, &config);
        assert_eq!(
            check(
                day(5),
                data(EventType::TrackingNoteAdded, json!({"text": "chased"}))
            ),
            Ok(())
        );
        assert_eq!(
            check(
                day(5),
                data(
                    EventType::DecisionToTreat,
                    json!({"modality": "radiotherapy", "treatment": "subsequent", "plan_id": "rt"})
                )
            ),
            Ok(())
        );
        let third = check(
            day(6),
            data(EventType::TreatmentStarted, json!({"modality": "surgery"})),
        );
        assert_eq!(
            third.map_err(|e| e.code()),
            Err("treatment_already_started")
        );
        // A fresh pathway refuses the second first treatment outright.
        let fresh = &history[..3];
        let second = check_event(
            fresh,
            day(4),
            &data(EventType::TreatmentStarted, json!({"modality": "surgery"})),
            today,
            &config,
        );
        assert_eq!(
            second.map_err(|e| e.code()),
            Err("treatment_already_started")
        );
        // Nor can a correction turn a subsequent treatment into a third
        // first one.
        history.extend(recorded([
            (
                day(5),
                data(
                    EventType::DecisionToTreat,
                    json!({"modality": "radiotherapy", "treatment": "subsequent", "plan_id": "rt"}),
                ),
            ),
            (
                day(6),
                data(
                    EventType::TreatmentStarted,
                    json!({"modality": "radiotherapy", "treatment": "subsequent", "plan_id": "rt"}),
                ),
            ),
        ])
        .into_iter()
        .enumerate()
        .map(|(i, e)| RecordedEvent {
            event_id: Uuid::from_u128(i as u128 + 5),
            version: i as u64 + 5,
            ..e
        }));
        let sixth = history[5].event_id;
        let check = |on: NaiveDate, d: EventData| check_event(&history, on, &d, today, &config);
        let to_first = check(
            day(7),
            data(
                EventType::EventCorrected,
                json!({"corrects": sixth, "new_data": {"modality": "radiotherapy"}, "reason": "keyed as the wrong plan"}),
            ),
        );
        assert_eq!(
            to_first.map_err(|e| e.code()),
            Err("correction_breaks_pathway")
        );
        let to_another_date = check(
            day(7),
            data(
                EventType::EventCorrected,
                json!({"corrects": sixth, "new_occurred_on": "2025-04-07", "reason": "wrong day"}),
            ),
        );
        assert_eq!(to_another_date, Ok(()));
    }

    /// A pathway whose upgrade came after its first treatment or after
    /// cancer was ruled out (accepted before decision 174) stays usable,
    /// and its upgrade starts no clock; a fresh pathway refuses it.
    #[test]
    fn a_pathway_upgraded_after_its_treatment_from_before_stays_usable() {
        let referral = (
            day(1),
            data(
                EventType::ReferralReceived,
                json!({"nhs_number": "9434765919", "trust": "RXH", "tumour_site": "lung", "route": "other"}),
            ),
        );
        let treated = [
            referral.clone(),
            (
                day(2),
                data(EventType::DecisionToTreat, json!({"modality": "surgery"})),
            ),
            (
                day(3),
                data(EventType::TreatmentStarted, json!({"modality": "surgery"})),
            ),
        ];
        let ruled_out = [
            referral,
            (
                day(3),
                data(
                    EventType::DiagnosisCommunicated,
                    json!({"outcome": "cancer_ruled_out"}),
                ),
            ),
        ];
        let upgrade = (day(4), data(EventType::ConsultantUpgraded, json!({})));
        let config = RulesConfig::defaults();
        let today = day(30);
        for before in [&treated[..], &ruled_out[..]] {
            let fresh = recorded(before.iter().cloned());
            let refused = check_event(&fresh, upgrade.0, &upgrade.1, today, &config);
            assert_eq!(refused.map_err(|e| e.code()), Err("upgrade_not_allowed"));

            let history = recorded(before.iter().cloned().chain([upgrade.clone()]));
            let note = data(EventType::TrackingNoteAdded, json!({"text": "chased"}));
            assert_eq!(check_event(&history, day(5), &note, today, &config), Ok(()));
            let state = crate::evaluate(&effective_events(&history).unwrap(), today, &config)
                .expect("a state");
            assert_eq!(state.clocks.d62.status, crate::ClockStatus::NotStarted);
            assert!(!state.on_ptl);
        }
    }

    /// A subsequent treatment dated before its plan's ECAD is refused, and
    /// so is a correction moving the ECAD past a treatment; a pathway
    /// holding one from before decision 181 takes every other event (its
    /// period waited 0 days), but not another such treatment.
    #[test]
    fn a_treatment_before_its_ecad_is_refused_and_tolerated_from_before() {
        let plan = |ecad: u32| {
            data(
                EventType::DecisionToTreat,
                json!({"modality": "radiotherapy", "treatment": "subsequent", "plan_id": "rt",
                       "earliest_clinically_appropriate_date": day(ecad).to_string()}),
            )
        };
        let treatment = |plan_id: &str| {
            data(
                EventType::TreatmentStarted,
                json!({"modality": "radiotherapy", "treatment": "subsequent", "plan_id": plan_id}),
            )
        };
        let first: Vec<_> = treated_breast()
            .into_iter()
            .chain([(day(4), plan(20))])
            .collect();
        let config = RulesConfig::defaults();
        let today = day(30);
        let code = |r: Result<(), RuleError>| r.map_err(|e| e.code());
        let fresh = recorded(first.iter().cloned());
        assert_eq!(
            code(check_event(
                &fresh,
                day(10),
                &treatment("rt"),
                today,
                &config
            )),
            Err("invalid_field")
        );
        assert_eq!(
            check_event(&fresh, day(20), &treatment("rt"), today, &config),
            Ok(())
        );
        // A later decision of the plan, dated before the treatment, moves
        // its ECAD: the treatment is judged by it.
        let redecided = recorded(first.iter().cloned().chain([(day(8), plan(9))]));
        assert_eq!(
            check_event(&redecided, day(10), &treatment("rt"), today, &config),
            Ok(())
        );
        // Kept from before: every other event goes on.
        let legacy = recorded(first.iter().cloned().chain([(day(10), treatment("rt"))]));
        let note = data(EventType::TrackingNoteAdded, json!({"text": "chased"}));
        assert_eq!(check_event(&legacy, day(11), &note, today, &config), Ok(()));
        let state =
            crate::evaluate(&effective_events(&legacy).unwrap(), today, &config).expect("a state");
        assert_eq!(state.treatment_periods[1].clock.days, 0, "never negative");
        // A correction that moves a plan's ECAD past its treatment is refused.
        let treated = recorded(first.iter().cloned().chain([(day(20), treatment("rt"))]));
        let correction = data(
            EventType::EventCorrected,
            json!({"corrects": treated[3].event_id.to_string(), "reason": "ECAD keyed wrong",
                   "new_data": {"modality": "radiotherapy", "treatment": "subsequent", "plan_id": "rt",
                                "earliest_clinically_appropriate_date": day(25).to_string()}}),
        );
        assert_eq!(
            code(check_event(&treated, day(21), &correction, today, &config)),
            Err("correction_breaks_pathway")
        );
    }

    /// A closure dated before an event already recorded is refused
    /// (decision 197); a pathway holding one from before takes the events
    /// that may join a closed pathway, but no correction that adds another.
    #[test]
    fn a_closure_before_a_recorded_event_is_refused_and_tolerated_from_before() {
        let config = RulesConfig::defaults();
        let today = day(30);
        let code = |r: Result<(), RuleError>| r.map_err(|e| e.code());
        let closure = data(EventType::PathwayClosed, json!({"reason": "patient_died"}));
        let treated = recorded(treated_breast());
        let refused = check_event(&treated, day(2), &closure, today, &config);
        assert_eq!(
            refused,
            Err(RuleError::ClosedBeforeEvent {
                closed_on: day(2),
                event_type: "treatment_started".into(),
                occurred_on: day(3),
            })
        );
        assert!(!refused.unwrap_err().to_string().contains("9434765919"));
        assert_eq!(
            check_event(&treated, day(3), &closure, today, &config),
            Ok(())
        );
        // Kept from before: a note and a correction of the closure's
        // reason go on; a correction moving the decision past it does not.
        let legacy = recorded(treated_breast().into_iter().chain([(day(2), closure)]));
        let note = data(EventType::TrackingNoteAdded, json!({"text": "chased"}));
        assert_eq!(check_event(&legacy, day(11), &note, today, &config), Ok(()));
        let reason = data(
            EventType::EventCorrected,
            json!({"corrects": legacy[3].event_id.to_string(), "reason": "wrong reason",
                   "new_data": {"reason": "other"}}),
        );
        assert_eq!(
            check_event(&legacy, day(12), &reason, today, &config),
            Ok(())
        );
        let state =
            crate::evaluate(&effective_events(&legacy).unwrap(), today, &config).expect("a state");
        assert_eq!(state.status, crate::PathwayStatus::Closed);
        let moved = data(
            EventType::EventCorrected,
            json!({"corrects": legacy[1].event_id.to_string(), "reason": "wrong day",
                   "new_occurred_on": day(3).to_string()}),
        );
        assert_eq!(
            code(check_event(&legacy, day(12), &moved, today, &config)),
            Err("correction_breaks_pathway")
        );
    }

    fn recorded(events: impl IntoIterator<Item = (NaiveDate, EventData)>) -> Vec<RecordedEvent> {
        events
            .into_iter()
            .enumerate()
            .map(|(i, (occurred_on, data))| RecordedEvent {
                event_id: Uuid::from_u128(i as u128 + 1),
                version: i as u64 + 1,
                recorded_at: DateTime::<Utc>::MIN_UTC,
                occurred_on,
                data,
            })
            .collect()
    }
}
