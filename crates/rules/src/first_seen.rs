//! The date first seen (SPEC 2.12, a CWT data item and a CANPTL count): the
//! earlier of the first first-seen appointment attended and the first test
//! done after a straight-to-test triage *(ours: straight to test counts as
//! first seen)*. A pure function of the effective events, for the returns.

use chrono::NaiveDate;

use crate::codes::{AttendanceMode, TriageOutcome};
use crate::event::EventData;
use crate::history::EffectiveEvent;

/// How the patient was first seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeenBy {
    /// A `first_outpatient` or `one_stop` appointment attended, with its
    /// mode when recorded (schema version 2).
    Appointment(Option<AttendanceMode>),
    /// A `diagnostic_performed` after a `straight_to_test` triage.
    StraightToTest,
}

/// When and how a patient was first seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirstSeen {
    pub date: NaiveDate,
    pub by: SeenBy,
}

/// The date first seen of a pathway's effective events (sorted, as
/// [`crate::effective_events`] returns them), if the patient has been seen.
/// On the same date an appointment wins over a test.
pub fn first_seen(events: &[EffectiveEvent]) -> Option<FirstSeen> {
    let appointment = events.iter().find_map(|e| match &*e.data {
        EventData::AppointmentAttended(a) if a.kind.is_first_seen() => Some(FirstSeen {
            date: e.occurred_on,
            by: SeenBy::Appointment(a.mode),
        }),
        _ => None,
    });
    let mut straight_to_test = false;
    let test = events.iter().find_map(|e| match &*e.data {
        EventData::TriageCompleted(t) => {
            straight_to_test |= t.outcome == TriageOutcome::StraightToTest;
            None
        }
        EventData::DiagnosticPerformed(_) if straight_to_test => Some(FirstSeen {
            date: e.occurred_on,
            by: SeenBy::StraightToTest,
        }),
        _ => None,
    });
    match (appointment, test) {
        (Some(a), Some(t)) if t.date < a.date => Some(t),
        (Some(a), _) => Some(a),
        (None, t) => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventType;
    use serde_json::json;
    use std::borrow::Cow;

    fn event(day: u32, ty: EventType, data: serde_json::Value) -> EffectiveEvent<'static> {
        EffectiveEvent {
            event_id: uuid::Uuid::nil(),
            version: day as u64,
            occurred_on: NaiveDate::from_ymd_opt(2025, 3, day).unwrap(),
            data: Cow::Owned(EventData::from_json(ty, data).unwrap()),
        }
    }

    #[test]
    fn the_earlier_of_a_first_appointment_and_a_straight_to_test_test() {
        let d = |day| NaiveDate::from_ymd_opt(2025, 3, day).unwrap();
        let follow_up = event(
            2,
            EventType::AppointmentAttended,
            json!({"kind": "follow_up"}),
        );
        let test_before_triage = event(3, EventType::DiagnosticPerformed, json!({"test": "ct"}));
        let triage = event(
            4,
            EventType::TriageCompleted,
            json!({"outcome": "straight_to_test"}),
        );
        let test = event(
            6,
            EventType::DiagnosticPerformed,
            json!({"test": "colonoscopy"}),
        );
        let attended = event(
            8,
            EventType::AppointmentAttended,
            json!({"kind": "one_stop", "mode": "virtual"}),
        );
        assert_eq!(first_seen(std::slice::from_ref(&follow_up)), None);
        assert_eq!(
            first_seen(&[follow_up.clone(), attended.clone()]),
            Some(FirstSeen {
                date: d(8),
                by: SeenBy::Appointment(Some(AttendanceMode::Virtual))
            })
        );
        assert_eq!(
            first_seen(&[
                test_before_triage.clone(),
                triage.clone(),
                test.clone(),
                attended.clone()
            ]),
            Some(FirstSeen {
                date: d(6),
                by: SeenBy::StraightToTest
            })
        );
        // A test before any straight-to-test triage is not a first-seen date.
        assert_eq!(
            first_seen(&[test_before_triage, attended.clone()]).map(|f| f.date),
            Some(d(8))
        );
        let outpatient = event(
            4,
            EventType::TriageCompleted,
            json!({"outcome": "outpatient"}),
        );
        assert_eq!(first_seen(&[outpatient, test]), None);
    }
}
