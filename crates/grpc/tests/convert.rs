//! Protobuf ↔ JSON envelope equivalence for every event type of SPEC 3.2:
//! each sample (every optional field set) goes JSON → protobuf → wire bytes
//! → protobuf → JSON, and both JSON envelopes parse to the same event.

use openptl_grpc::convert::{data_from_json, data_to_json, envelope_to_json};
use openptl_grpc::proto::{Envelope, EventData};
use openptl_rules::{EventType, NewEvent};
use prost::Message;
use serde_json::{json, Value};

const CORRECTED: &str = "2f1c6a3e-1f7b-4a52-9a1e-6d2b8f0c1a11";

/// One sample `data` per event type, with every optional field.
fn samples() -> Vec<(&'static str, Value)> {
    vec![
        (
            "referral_received",
            json!({"nhs_number": "9434765919", "trust": "RXH", "tumour_site": "lower_gi", "route": "screening", "screening_programme": "bowel", "referrer": "A81001", "nhs_number_status": "not_traced"}),
        ),
        ("consultant_upgraded", json!({})),
        ("fit_result_recorded", json!({"value_ug_per_g": 12.5})),
        ("fit_result_recorded", json!({"not_appropriate": true})),
        ("triage_completed", json!({"outcome": "straight_to_test"})),
        ("appointment_attended", json!({"kind": "one_stop"})),
        (
            "appointment_missed",
            json!({"kind": "first_outpatient", "reason": "did_not_attend"}),
        ),
        (
            "diagnostic_requested",
            json!({"test": "colonoscopy", "request_id": "R-1"}),
        ),
        (
            "diagnostic_performed",
            json!({"test": "colonoscopy", "request_id": "R-1"}),
        ),
        ("diagnostic_reported", json!({"test": "ct"})),
        ("mdt_discussed", json!({"outcome": "surgery_recommended"})),
        (
            "diagnosis_communicated",
            json!({"outcome": "cancer_diagnosed", "method": "face_to_face", "icd10": "C18.7"}),
        ),
        ("fds_excluded", json!({"reason": "patient_choice"})),
        ("decision_to_treat", json!({"modality": "surgery"})),
        (
            "treatment_offer_declined",
            json!({"offered_on": "2025-03-10", "available_from": "2025-03-24", "setting": "admitted"}),
        ),
        ("treatment_started", json!({"modality": "surgery"})),
        // Schema version 2 (SPEC 2.12): every new field crosses protobuf too.
        (
            "decision_to_treat",
            json!({"modality": "radiotherapy", "treatment": "subsequent", "plan_id": "rt", "earliest_clinically_appropriate_date": "2025-04-01"}),
        ),
        (
            "treatment_started",
            json!({"modality": "radiotherapy", "treatment": "subsequent", "plan_id": "rt", "care_setting": "non_admitted"}),
        ),
        (
            "treatment_offer_declined",
            json!({"offered_on": "2025-03-10", "available_from": "2025-03-24", "setting": "admitted", "plan_id": "rt"}),
        ),
        (
            "appointment_attended",
            json!({"kind": "first_outpatient", "mode": "virtual"}),
        ),
        ("pathway_transferred", json!({"to_trust": "RHM"})),
        ("tumour_site_changed", json!({"tumour_site": "upper_gi"})),
        ("pathway_closed", json!({"reason": "referral_withdrawn"})),
        (
            "tracking_note_added",
            json!({"text": "Chased histology", "next_action": "Call lab", "next_action_due": "2025-03-12", "owner": "J Smith", "escalated": true}),
        ),
        (
            "event_corrected",
            json!({"corrects": CORRECTED, "reason": "keyed wrongly", "new_occurred_on": "2025-03-04", "new_data": {"outcome": "outpatient"}}),
        ),
        (
            "event_voided",
            json!({"voids": CORRECTED, "reason": "wrong patient"}),
        ),
    ]
}

fn envelope(event_type: &str, data: Value) -> Value {
    json!({
        "event_id": "3c1d6a3e-1f7b-4a52-9a1e-6d2b8f0c1a11",
        "pathway_id": "RXH-000123",
        "type": event_type,
        "occurred_on": "2025-03-05",
        "expected_version": 3,
        "data": data,
    })
}

#[test]
fn every_event_type_round_trips_through_protobuf() {
    let mut covered = std::collections::BTreeSet::new();
    for (event_type, data) in samples() {
        let original = NewEvent::from_json(envelope(event_type, data.clone()))
            .unwrap_or_else(|e| panic!("{event_type}: the sample is invalid: {e:?}"));
        // The corrected event of the sample correction is a triage.
        let proto = data_from_json(event_type, &data, Some("triage_completed")).unwrap();
        let wire = Envelope {
            event_id: Some("3c1d6a3e-1f7b-4a52-9a1e-6d2b8f0c1a11".into()),
            pathway_id: "RXH-000123".into(),
            occurred_on: "2025-03-05".into(),
            expected_version: Some(3),
            data: Some(proto),
        }
        .encode_to_vec();
        let back = Envelope::decode(wire.as_slice()).unwrap();
        let json_back = envelope_to_json(&back).unwrap();
        assert_eq!(json_back["type"], event_type);
        let parsed = NewEvent::from_json(json_back.clone())
            .unwrap_or_else(|e| panic!("{event_type}: {json_back} does not parse: {e:?}"));
        assert_eq!(parsed, original, "{event_type}");
        assert_eq!(
            json_back["data"], data,
            "{event_type}: the JSON data differs"
        );
        covered.insert(event_type);
    }
    let all: std::collections::BTreeSet<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(covered, all, "a sample per event type");
}

#[test]
fn an_empty_or_mistyped_message_is_refused_clearly() {
    let empty = EventData { kind: None };
    assert!(data_to_json(&empty)
        .unwrap_err()
        .0
        .contains("names no event type"));
    let no_data = Envelope {
        pathway_id: "X".into(),
        ..Envelope::default()
    };
    assert!(envelope_to_json(&no_data)
        .unwrap_err()
        .0
        .contains("no `data`"));
    // Required fields left at their protobuf default reach the rules as
    // empty strings and are refused there, with the field named.
    let referral = data_from_json(
        "referral_received",
        &json!({"nhs_number": "", "trust": "", "tumour_site": "", "route": ""}),
        None,
    )
    .unwrap();
    let json = envelope_to_json(&Envelope {
        pathway_id: "X".into(),
        occurred_on: "2025-03-05".into(),
        data: Some(referral),
        ..Envelope::default()
    })
    .unwrap();
    assert!(NewEvent::from_json(json).is_err());
}
