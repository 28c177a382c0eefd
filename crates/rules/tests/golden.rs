//! Golden fixtures of the stored event format (SPEC 3.2 and 9, STYLE rule 6:
//! "stored events are a forever format"). For every event type of schema
//! version 1, `tests/golden/v1/<type>.json` holds a representative event
//! (`{ "occurred_on", "data" }`, every field present, optional ones too) and
//! `<type>.msgpack` the exact bytes `EventData::encode_payload` wrote for it.
//!
//! The bytes were written once and are never regenerated: if this test fails
//! after a change, the change broke events already on disk. Add a version 2
//! beside version 1 with an upcaster instead.
//!
//! A missing pair is written only when `OPENPTL_WRITE_GOLDEN=1` is set (for a
//! new event type); an existing file is never overwritten.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use openptl_rules::{date, EventData, EventType, PayloadError, SCHEMA_VERSION};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Number, Value};
use uuid::Uuid;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1")
}

fn write_missing() -> bool {
    std::env::var("OPENPTL_WRITE_GOLDEN").as_deref() == Ok("1")
}

/// Every field of each event type's data in schema version 1 (SPEC 3.2).
/// Each fixture must carry exactly these, so that every field is pinned.
fn fields(ty: EventType) -> &'static [&'static str] {
    match ty {
        EventType::ReferralReceived => &[
            "nhs_number",
            "trust",
            "tumour_site",
            "route",
            "screening_programme",
            "referrer",
        ],
        EventType::ConsultantUpgraded => &[],
        EventType::FitResultRecorded => &["value_ug_per_g", "not_appropriate"],
        EventType::TriageCompleted => &["outcome"],
        EventType::AppointmentAttended => &["kind"],
        EventType::AppointmentMissed => &["kind", "reason"],
        EventType::DiagnosticRequested
        | EventType::DiagnosticPerformed
        | EventType::DiagnosticReported => &["test", "request_id"],
        EventType::MdtDiscussed => &["outcome"],
        EventType::DiagnosisCommunicated => &["outcome", "method", "icd10"],
        EventType::FdsExcluded => &["reason"],
        EventType::DecisionToTreat => &["modality"],
        EventType::TreatmentOfferDeclined => &["offered_on", "available_from", "setting"],
        EventType::TreatmentStarted => &["modality"],
        EventType::PathwayTransferred => &["to_trust"],
        EventType::TumourSiteChanged => &["tumour_site"],
        EventType::PathwayClosed => &["reason"],
        EventType::TrackingNoteAdded => &[
            "text",
            "next_action",
            "next_action_due",
            "owner",
            "escalated",
        ],
        EventType::EventCorrected => &["corrects", "reason", "new_occurred_on", "new_data"],
        EventType::EventVoided => &["voids", "reason"],
    }
}

/// The seed of a missing fixture: one representative event per type.
/// Used only to write a fixture that does not exist yet.
fn representative(ty: EventType) -> Value {
    let data = match ty {
        EventType::ReferralReceived => json!({
            "nhs_number": "9434765919",
            "trust": "RXH",
            "tumour_site": "lower_gi",
            "route": "screening",
            "screening_programme": "bowel",
            "referrer": "Y0123",
        }),
        EventType::ConsultantUpgraded => json!({}),
        // `not_appropriate: false` beside a value is accepted and stored as sent.
        EventType::FitResultRecorded => json!({ "value_ug_per_g": 12.5, "not_appropriate": false }),
        EventType::TriageCompleted => json!({ "outcome": "straight_to_test" }),
        EventType::AppointmentAttended => json!({ "kind": "first_outpatient" }),
        EventType::AppointmentMissed => json!({ "kind": "one_stop", "reason": "did_not_attend" }),
        EventType::DiagnosticRequested => {
            json!({ "test": "colonoscopy", "request_id": "REQ-2025-0001" })
        }
        EventType::DiagnosticPerformed => {
            json!({ "test": "ct_colonography", "request_id": "REQ-2025-0002" })
        }
        EventType::DiagnosticReported => {
            json!({ "test": "prostate_biopsy", "request_id": "REQ-2025-0003" })
        }
        EventType::MdtDiscussed => json!({ "outcome": "refer_for_surgery" }),
        EventType::DiagnosisCommunicated => {
            json!({ "outcome": "cancer_diagnosed", "method": "face_to_face", "icd10": "C18.7" })
        }
        EventType::FdsExcluded => json!({ "reason": "patient_choice" }),
        EventType::DecisionToTreat => json!({ "modality": "surgery" }),
        EventType::TreatmentOfferDeclined => {
            json!({ "offered_on": "2025-04-22", "available_from": "2025-04-30", "setting": "admitted" })
        }
        EventType::TreatmentStarted => json!({ "modality": "chemoradiotherapy" }),
        EventType::PathwayTransferred => json!({ "to_trust": "RHM" }),
        EventType::TumourSiteChanged => json!({ "tumour_site": "upper_gi" }),
        EventType::PathwayClosed => json!({ "reason": "patient_declined_all_treatment" }),
        EventType::TrackingNoteAdded => json!({
            "text": "Awaiting CT colonography report; chased radiology.",
            "next_action": "Chase CT report",
            "next_action_due": "2025-04-03",
            "owner": "Cancer tracker (lower GI)",
            "escalated": true,
        }),
        EventType::EventCorrected => json!({
            "corrects": "3c1d6a3e-1f7b-4a52-9a1e-6d2b8f0c1a11",
            "reason": "Test was CT colonography, not colonoscopy",
            "new_occurred_on": "2025-03-14",
            "new_data": { "test": "ct_colonography", "request_id": "REQ-2025-0002" },
        }),
        EventType::EventVoided => json!({
            "voids": "3c1d6a3e-1f7b-4a52-9a1e-6d2b8f0c1a11",
            "reason": "Recorded against the wrong patient",
        }),
    };
    json!({ "occurred_on": "2025-03-17", "data": data })
}

/// Writes `path` only when it does not exist yet.
fn write_new(path: &Path, bytes: &[u8]) {
    if path.exists() {
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    eprintln!("wrote {}", path.display());
}

/// Parses a fixture envelope into its date and typed data.
fn parse_envelope(ty: EventType, envelope: &Value) -> Result<(NaiveDate, EventData), String> {
    let object = envelope
        .as_object()
        .ok_or("the fixture is not a JSON object")?;
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort();
    if keys != ["data", "occurred_on"] {
        return Err(format!(
            "the fixture must hold exactly `occurred_on` and `data`, not {keys:?}"
        ));
    }
    let occurred_on = envelope["occurred_on"]
        .as_str()
        .and_then(date::parse)
        .ok_or("`occurred_on` is not a YYYY-MM-DD date")?;
    let data = EventData::from_json(ty, envelope["data"].clone())
        .map_err(|e| format!("`data` is refused: {e}"))?;
    Ok((occurred_on, data))
}

/// Writes whichever half of the pair is missing (the bytes from the JSON).
fn write_missing_pair(ty: EventType, json_path: &Path, msgpack_path: &Path) {
    if !json_path.exists() {
        let text = serde_json::to_string_pretty(&representative(ty)).unwrap() + "\n";
        write_new(json_path, text.as_bytes());
    }
    if !msgpack_path.exists() {
        let envelope: Value =
            serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
        let (occurred_on, data) = parse_envelope(ty, &envelope)
            .unwrap_or_else(|e| panic!("{}: {e}", json_path.display()));
        write_new(msgpack_path, &data.encode_payload(occurred_on));
    }
}

/// Every problem with one type's fixture pair (empty when it is sound).
fn check_pair(ty: EventType, json_path: &Path, msgpack_path: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for path in [json_path, msgpack_path] {
        if !path.exists() {
            problems.push(format!(
                "{} is missing (run once with OPENPTL_WRITE_GOLDEN=1 to write fixtures of a new event type)",
                path.display()
            ));
        }
    }
    if !problems.is_empty() {
        return problems;
    }
    let text = std::fs::read_to_string(json_path).unwrap();
    let bytes = std::fs::read(msgpack_path).unwrap();
    let envelope: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => return vec![format!("not JSON: {e}")],
    };
    let (occurred_on, data) = match parse_envelope(ty, &envelope) {
        Ok(parsed) => parsed,
        Err(e) => return vec![e],
    };

    // The fixture pins every field of the type, in the form we write back.
    let mut present: Vec<&str> = envelope["data"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = fields(ty).to_vec();
    present.sort();
    expected.sort();
    if present != expected {
        problems.push(format!(
            "the fixture's data fields are {present:?}, expected every field {expected:?}"
        ));
    }
    if data.to_json() != envelope["data"] {
        problems.push(format!(
            "the fixture's data is not in canonical form: it reads back as {}",
            data.to_json()
        ));
    }

    // The stored bytes decode to the fixture, and the fixture encodes to them.
    match EventData::decode_payload(ty, 1, &bytes) {
        Ok(decoded) if decoded == (occurred_on, data.clone()) => {}
        Ok((day, decoded)) => problems.push(format!(
            "the bytes decode to {day} {} instead",
            decoded.to_json()
        )),
        Err(e) => problems.push(format!("the bytes no longer decode: {e}")),
    }
    let encoded = data.encode_payload(occurred_on);
    if encoded != bytes {
        problems.push(format!(
            "encoding changed:\n      stored  {}\n      now     {}",
            hex(&bytes),
            hex(&encoded)
        ));
    }

    // Named fields, never positional: the bytes read as the same map as the JSON.
    match rmp_serde::from_slice::<Loose>(&bytes) {
        Ok(Loose(value)) if value == envelope => {}
        Ok(Loose(value)) => problems.push(format!(
            "the bytes hold {value}, not the fixture's named fields"
        )),
        Err(e) => problems.push(format!("the bytes are not a MessagePack map: {e}")),
    }

    // A version this build does not know is refused, never guessed.
    if !matches!(
        EventData::decode_payload(ty, 2, &bytes),
        Err(PayloadError::UnknownVersion { .. })
    ) {
        problems.push("schema version 2 was not refused as unknown".to_string());
    }
    problems
}

#[test]
fn every_event_type_has_golden_v1_fixtures_that_still_decode_and_encode() {
    assert_eq!(
        SCHEMA_VERSION, 1,
        "a new schema version needs its own golden directory beside v1"
    );
    let dir = golden_dir();
    let mut failures = Vec::new();
    for &ty in EventType::ALL {
        let json_path = dir.join(format!("{}.json", ty.as_str()));
        let msgpack_path = dir.join(format!("{}.msgpack", ty.as_str()));
        if write_missing() {
            write_missing_pair(ty, &json_path, &msgpack_path);
        }
        for problem in check_pair(ty, &json_path, &msgpack_path) {
            failures.push(format!("{ty}: {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden fixture problems:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn the_golden_directory_holds_only_fixtures_of_known_event_types() {
    let Ok(entries) = std::fs::read_dir(golden_dir()) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let (stem, ext) = name.rsplit_once('.').unwrap_or((&name, ""));
        assert!(
            EventType::parse(stem).is_some() && matches!(ext, "json" | "msgpack"),
            "{} is not a fixture of a known event type",
            path.display()
        );
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Any MessagePack value as JSON, for comparing stored bytes with a fixture.
/// UUIDs are written by the `uuid` crate as 16 raw bytes (MessagePack is not
/// human-readable to serde); they read back here as their hyphenated string.
struct Loose(Value);

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor).map(Loose)
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any MessagePack value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a non-finite float"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Uuid::from_slice(v)
            .map(|id| Value::String(id.to_string()))
            .map_err(|_| E::custom("bytes that are not a UUID"))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Loose(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some((key, Loose(value))) = map.next_entry::<String, Loose>()? {
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}
