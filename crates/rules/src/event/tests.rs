//! Tests of the event catalogue: JSON decoding with field-precise errors,
//! checks, and the stored payloads.

use super::*;
use serde_json::json;

fn decode(ty: &str, data: Value) -> Result<EventData, RuleError> {
    EventData::from_json(EventType::parse(ty).unwrap(), data)
}

#[test]
fn field_errors_name_the_field() {
    let table: Vec<(&str, Value, &str, &str)> = vec![
        ("triage_completed", json!({}), "invalid_field", "outcome"),
        (
            "triage_completed",
            json!({"outcome": "maybe"}),
            "invalid_field",
            "outcome",
        ),
        (
            "triage_completed",
            json!({"outcome": "outpatient", "colour": 1}),
            "invalid_field",
            "colour",
        ),
        (
            "triage_completed",
            json!({"outcome": 5}),
            "invalid_field",
            "outcome",
        ),
        (
            "referral_received",
            json!({"nhs_number": "9434765918", "trust": "RXH", "tumour_site": "lung", "route": "other"}),
            "invalid_nhs_number",
            "nhs_number",
        ),
        (
            "referral_received",
            json!({"nhs_number": 9434765919u64, "trust": "RXH", "tumour_site": "lung", "route": "other"}),
            "invalid_nhs_number",
            "nhs_number",
        ),
        (
            "referral_received",
            json!({"nhs_number": "9434765919", "trust": "R!", "tumour_site": "lung", "route": "other"}),
            "invalid_ods_code",
            "trust",
        ),
        (
            "referral_received",
            json!({"nhs_number": "9434765919", "trust": "RXH", "tumour_site": "liver", "route": "other"}),
            "unknown_tumour_site",
            "tumour_site",
        ),
        (
            "referral_received",
            json!({"nhs_number": "9434765919", "trust": "RXH", "tumour_site": "lung", "route": "screening"}),
            "invalid_field",
            "screening_programme",
        ),
        (
            // The national code is not our wire code: the message lists ours.
            "referral_received",
            json!({"nhs_number": "9434765919", "trust": "RXH", "tumour_site": "lung", "route": "other", "nhs_number_status": "01"}),
            "invalid_field",
            "nhs_number_status",
        ),
        (
            "pathway_transferred",
            json!({"to_trust": "x"}),
            "invalid_ods_code",
            "to_trust",
        ),
        (
            "treatment_offer_declined",
            json!({"offered_on": "2025-04-22", "available_from": "2025-04-22", "setting": "admitted"}),
            "invalid_field",
            "available_from",
        ),
        (
            "treatment_offer_declined",
            json!({"offered_on": "22/04/2025", "available_from": "2025-04-30", "setting": "admitted"}),
            "invalid_field",
            "offered_on",
        ),
        (
            "fit_result_recorded",
            json!({}),
            "invalid_field",
            "value_ug_per_g",
        ),
        (
            "fit_result_recorded",
            json!({"value_ug_per_g": -1}),
            "invalid_field",
            "value_ug_per_g",
        ),
        (
            "fit_result_recorded",
            json!({"value_ug_per_g": 4, "not_appropriate": true}),
            "invalid_field",
            "not_appropriate",
        ),
        (
            "tracking_note_added",
            json!({"text": ""}),
            "invalid_field",
            "text",
        ),
        (
            "tracking_note_added",
            json!({"text": "x".repeat(2001)}),
            "invalid_field",
            "text",
        ),
        (
            "event_corrected",
            json!({"corrects": "not-a-uuid", "reason": "x", "new_occurred_on": "2025-01-01"}),
            "invalid_field",
            "corrects",
        ),
        (
            "event_corrected",
            json!({"corrects": "3c1d6a3e-1f7b-4a52-9a1e-6d2b8f0c1a11", "reason": "x"}),
            "invalid_field",
            "new_occurred_on",
        ),
        (
            "event_voided",
            json!({"voids": "3c1d6a3e-1f7b-4a52-9a1e-6d2b8f0c1a11", "reason": ""}),
            "invalid_field",
            "reason",
        ),
        (
            "diagnosis_communicated",
            json!({"outcome": "cancer_diagnosed", "icd10": "cancer"}),
            "invalid_field",
            "icd10",
        ),
    ];
    for (ty, data, code, field) in table {
        let err = decode(ty, data.clone()).expect_err(&format!("{ty} {data}"));
        assert_eq!(err.code(), code, "{ty} {data}: {err}");
        assert_eq!(err.details()["field"], field, "{ty} {data}: {err}");
    }
}

#[test]
fn errors_never_echo_an_nhs_number() {
    let err = decode("tracking_note_added", json!({"text": 9434765919u64})).unwrap_err();
    assert!(!err.to_string().contains("9434765919"), "{err}");
    let err = decode(
        "referral_received",
        json!({"nhs_number": "943 476 5918", "trust": "RXH", "tumour_site": "lung", "route": "other"}),
    )
    .unwrap_err();
    assert!(!err.to_string().contains("5918"), "{err}");
}

#[test]
fn payload_round_trips_through_msgpack() {
    let data = decode(
        "treatment_offer_declined",
        json!({"offered_on": "2025-04-22", "available_from": "2025-04-30", "setting": "admitted"}),
    )
    .unwrap();
    let day = NaiveDate::from_ymd_opt(2025, 4, 17).unwrap();
    let bytes = data.encode_payload(day);
    let (back_day, back) =
        EventData::decode_payload(EventType::TreatmentOfferDeclined, 2, &bytes).unwrap();
    assert_eq!((back_day, back), (day, data));
    assert!(EventData::decode_payload(EventType::TreatmentOfferDeclined, 3, &bytes).is_err());
    assert!(EventData::decode_payload(EventType::TriageCompleted, 2, &bytes).is_err());
}
