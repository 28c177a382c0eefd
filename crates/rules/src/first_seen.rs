//! The date first seen (SPEC 2.12, a CWT data item and a CANPTL count): the
//! earlier of the first first-seen appointment attended and the first test
//! done after a straight-to-test triage *(ours: straight to test counts as
//! first seen)*. A pure function of the effective events, for the returns.

use chrono::NaiveDate;

use crate::codes::{AttendanceMode, TriageOutcome};
use crate::event::EventData;
use crate::history::EffectiveEvent;
use crate::ids::OdsCode;
use crate::pathway::Transfer;

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

/// How a first-seen contact was held, as the weekly return splits it
/// (SPEC 4.4): the appointment's `mode` (schema version 2 of
/// `appointment_attended`), else not recorded. A straight-to-test test
/// carries no mode, so it is `not_recorded` *(ours)*.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SeenMedium {
    FaceToFace,
    Virtual,
    NotRecorded,
}

impl SeenMedium {
    pub const ALL: &'static [SeenMedium] = &[
        SeenMedium::FaceToFace,
        SeenMedium::Virtual,
        SeenMedium::NotRecorded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SeenMedium::FaceToFace => "face_to_face",
            SeenMedium::Virtual => "virtual",
            SeenMedium::NotRecorded => "not_recorded",
        }
    }

    pub fn index(self) -> u8 {
        self as u8
    }

    pub fn from_index(index: u8) -> Option<SeenMedium> {
        SeenMedium::ALL.get(index as usize).copied()
    }
}

impl FirstSeen {
    /// Face to face, virtual or not recorded.
    pub fn medium(&self) -> SeenMedium {
        match self.by {
            SeenBy::Appointment(Some(AttendanceMode::FaceToFace)) => SeenMedium::FaceToFace,
            SeenBy::Appointment(Some(AttendanceMode::Virtual)) => SeenMedium::Virtual,
            SeenBy::Appointment(None) | SeenBy::StraightToTest => SeenMedium::NotRecorded,
        }
    }
}

/// The date first seen, how, and the organisation where the patient was
/// seen: what the returns need of it (SPEC 2.12, 4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenAt {
    pub date: NaiveDate,
    pub medium: SeenMedium,
    /// The trust that held the pathway on that date.
    pub trust: OdsCode,
}

/// The trust holding a pathway on `date`: the referring trust, then the
/// receiving trust of each transfer dated on or before it *(ours: a
/// transfer on the day counts from that day)*. `transfers` are in date order.
pub fn trust_on<'a>(
    referring: &'a OdsCode,
    transfers: &'a [Transfer],
    date: NaiveDate,
) -> &'a OdsCode {
    transfers
        .iter()
        .take_while(|t| t.occurred_on <= date)
        .last()
        .map_or(referring, |t| &t.to_trust)
}

/// [`first_seen`] with its medium and organisation.
pub fn seen_at(
    events: &[&EffectiveEvent],
    referring: &OdsCode,
    transfers: &[Transfer],
) -> Option<SeenAt> {
    first_seen_of(events.iter().copied()).map(|f| SeenAt {
        date: f.date,
        medium: f.medium(),
        trust: *trust_on(referring, transfers, f.date),
    })
}

/// The date first seen of a pathway's effective events (sorted, as
/// [`crate::effective_events`] returns them), if the patient has been seen.
/// On the same date an appointment wins over a test.
pub fn first_seen(events: &[EffectiveEvent]) -> Option<FirstSeen> {
    first_seen_of(events.iter())
}

fn first_seen_of<'a, 'e: 'a>(
    events: impl Iterator<Item = &'a EffectiveEvent<'e>> + Clone,
) -> Option<FirstSeen> {
    let appointment = events.clone().find_map(|e| match &*e.data {
        EventData::AppointmentAttended(a) if a.kind.is_first_seen() => Some(FirstSeen {
            date: e.occurred_on,
            by: SeenBy::Appointment(a.mode),
        }),
        _ => None,
    });
    let mut straight_to_test = false;
    let mut events = events;
    let test = events.find_map(|e| match &*e.data {
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

    #[test]
    fn the_medium_follows_the_appointment_mode() {
        let cases = [
            (
                json!({"kind": "first_outpatient", "mode": "face_to_face"}),
                SeenMedium::FaceToFace,
            ),
            (
                json!({"kind": "one_stop", "mode": "virtual"}),
                SeenMedium::Virtual,
            ),
            (json!({"kind": "first_outpatient"}), SeenMedium::NotRecorded),
        ];
        for (data, medium) in cases {
            let seen = first_seen(&[event(3, EventType::AppointmentAttended, data.clone())]);
            assert_eq!(seen.map(|s| s.medium()), Some(medium), "{data}");
        }
        let triage = event(
            2,
            EventType::TriageCompleted,
            json!({"outcome": "straight_to_test"}),
        );
        let test = event(3, EventType::DiagnosticPerformed, json!({"test": "ct"}));
        assert_eq!(
            first_seen(&[triage, test]).map(|s| s.medium()),
            Some(SeenMedium::NotRecorded)
        );
    }

    #[test]
    fn the_organisation_is_the_trust_holding_the_pathway_that_day() {
        let d = |day| NaiveDate::from_ymd_opt(2025, 3, day).unwrap();
        let ods = |c: &str| OdsCode::parse(c).unwrap();
        let transfers = vec![
            Transfer {
                occurred_on: d(10),
                from_trust: ods("RXH"),
                to_trust: ods("RHM"),
            },
            Transfer {
                occurred_on: d(20),
                from_trust: ods("RHM"),
                to_trust: ods("RTH"),
            },
        ];
        let referring = ods("RXH");
        for (day, trust) in [
            (5, "RXH"),
            (10, "RHM"),
            (19, "RHM"),
            (20, "RTH"),
            (31, "RTH"),
        ] {
            assert_eq!(
                trust_on(&referring, &transfers, d(day)).as_str(),
                trust,
                "day {day}"
            );
        }
        let attended = event(
            12,
            EventType::AppointmentAttended,
            json!({"kind": "first_outpatient", "mode": "virtual"}),
        );
        let seen = seen_at(&[&attended], &referring, &transfers).unwrap();
        assert_eq!(
            seen,
            SeenAt {
                date: d(12),
                medium: SeenMedium::Virtual,
                trust: ods("RHM")
            }
        );
    }
}
