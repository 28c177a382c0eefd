//! Golden fixtures of the stored event format (SPEC 3.2 and 9, STYLE rule 6:
//! "stored events are a forever format"). For every event type of schema
//! version 1 (and, in `tests/golden/v2`, every type that has a version 2),
//! `tests/golden/v<N>/<type>.json` holds a representative event
//! (`{ "occurred_on", "data" }`, every field present, optional ones too) and
//! `<type>.msgpack` the exact bytes `EventData::encode_payload` wrote for it.
//!
//! The bytes were written once and are never regenerated: if this test fails
//! after a change, the change broke events already on disk. Add a new version
//! beside the old one with an upcaster instead. Version-1 bytes of a type now
//! at version 2 must still decode, through the upcaster, to the fixture, and
//! the frozen version-1 struct must still write exactly those bytes.
//!
//! A missing pair is written only when `OPENPTL_WRITE_GOLDEN=1` is set (for a
//! new event type); an existing file is never overwritten.

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use openptl_rules::event::v1;
use openptl_rules::{date, EventData, EventType, PayloadError};
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Map, Number, Value};
use uuid::Uuid;

fn golden_dir(version: u16) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/v{version}"))
}

/// The event types that have fixtures of `version`.
fn types_of(version: u16) -> Vec<EventType> {
    EventType::ALL
        .iter()
        .copied()
        .filter(|ty| version == 1 || ty.schema_version() >= version)
        .collect()
}

/// Every field of each event type's data in schema version `version`.
fn fields_of(ty: EventType, version: u16) -> Vec<&'static str> {
    let mut fields = fields(ty).to_vec();
    if version >= 2 {
        fields.extend_from_slice(match ty {
            EventType::DecisionToTreat => &[
                "treatment",
                "plan_id",
                "earliest_clinically_appropriate_date",
            ][..],
            EventType::TreatmentStarted => &["treatment", "plan_id", "care_setting"],
            EventType::TreatmentOfferDeclined => &["plan_id"],
            EventType::AppointmentAttended => &["mode"],
            EventType::ReferralReceived => &["nhs_number_status"],
            _ => &[],
        });
    }
    fields
}

/// The seed of a missing version-2 fixture.
fn representative_v2(ty: EventType) -> Value {
    let data = match ty {
        EventType::DecisionToTreat => json!({
            "modality": "radiotherapy",
            "treatment": "subsequent",
            "plan_id": "adjuvant-rt",
            "earliest_clinically_appropriate_date": "2025-04-14",
        }),
        EventType::TreatmentStarted => json!({
            "modality": "radiotherapy",
            "treatment": "subsequent",
            "plan_id": "adjuvant-rt",
            "care_setting": "non_admitted",
        }),
        EventType::TreatmentOfferDeclined => json!({
            "offered_on": "2025-04-22",
            "available_from": "2025-04-30",
            "setting": "admitted",
            "plan_id": "adjuvant-rt",
        }),
        EventType::AppointmentAttended => json!({ "kind": "one_stop", "mode": "virtual" }),
        EventType::ReferralReceived => {
            // Version 1's referral, with the number's trace status.
            let mut data = representative(ty)["data"].clone();
            data["nhs_number_status"] = json!("verified");
            data
        }
        _ => unreachable!("{ty} has no version 2"),
    };
    json!({ "occurred_on": "2025-03-17", "data": data })
}

/// How version 1 wrote `data` (the frozen struct of a type now at version
/// 2, else the current one), or why the fixture does not fit version 1.
fn encode_v1(
    ty: EventType,
    occurred_on: NaiveDate,
    data: &Value,
    parsed: &EventData,
) -> Result<Vec<u8>, String> {
    fn frozen<T: serde::de::DeserializeOwned + serde::Serialize>(
        occurred_on: NaiveDate,
        data: &Value,
    ) -> Result<Vec<u8>, String> {
        let v1: T =
            serde_json::from_value(data.clone()).map_err(|e| format!("not version 1 data: {e}"))?;
        Ok(v1::encode_payload(occurred_on, &v1))
    }
    match ty {
        EventType::DecisionToTreat => frozen::<v1::DecisionToTreat>(occurred_on, data),
        EventType::TreatmentStarted => frozen::<v1::TreatmentStarted>(occurred_on, data),
        EventType::TreatmentOfferDeclined => {
            frozen::<v1::TreatmentOfferDeclined>(occurred_on, data)
        }
        EventType::AppointmentAttended => frozen::<v1::AppointmentAttended>(occurred_on, data),
        EventType::ReferralReceived => frozen::<v1::ReferralReceived>(occurred_on, data),
        _ => Ok(parsed.encode_payload(occurred_on)),
    }
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
fn write_missing_pair(ty: EventType, version: u16, json_path: &Path, msgpack_path: &Path) {
    if !json_path.exists() {
        let seed = if version == 1 {
            representative(ty)
        } else {
            representative_v2(ty)
        };
        let text = serde_json::to_string_pretty(&seed).unwrap() + "\n";
        write_new(json_path, text.as_bytes());
    }
    if !msgpack_path.exists() {
        let envelope: Value =
            serde_json::from_str(&std::fs::read_to_string(json_path).unwrap()).unwrap();
        let (occurred_on, data) = parse_envelope(ty, &envelope)
            .unwrap_or_else(|e| panic!("{}: {e}", json_path.display()));
        let bytes = if version == 1 {
            encode_v1(ty, occurred_on, &envelope["data"], &data)
                .unwrap_or_else(|e| panic!("{}: {e}", json_path.display()))
        } else {
            assert_eq!(
                version,
                ty.schema_version(),
                "only the latest version is written"
            );
            data.encode_payload(occurred_on)
        };
        write_new(msgpack_path, &bytes);
    }
}

/// Every problem with one type's fixture pair (empty when it is sound).
fn check_pair(ty: EventType, version: u16, json_path: &Path, msgpack_path: &Path) -> Vec<String> {
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
    let mut expected = fields_of(ty, version);
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

    // The stored bytes decode (through the upcaster for an older version) to
    // the fixture, and the fixture encodes to them as that version wrote it.
    match EventData::decode_payload(ty, version, &bytes) {
        Ok(decoded) if decoded == (occurred_on, data.clone()) => {}
        Ok((day, decoded)) => problems.push(format!(
            "the bytes decode to {day} {} instead",
            decoded.to_json()
        )),
        Err(e) => problems.push(format!("the bytes no longer decode: {e}")),
    }
    let encoded = if version == 1 {
        encode_v1(ty, occurred_on, &envelope["data"], &data)
    } else if version == ty.schema_version() {
        Ok(data.encode_payload(occurred_on))
    } else {
        Err(format!(
            "version {version} is neither version 1 nor the latest"
        ))
    };
    match encoded {
        Ok(encoded) if encoded == bytes => {}
        Ok(encoded) => problems.push(format!(
            "encoding changed:\n      stored  {}\n      now     {}",
            hex(&bytes),
            hex(&encoded)
        )),
        Err(e) => problems.push(e),
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
    let unknown = ty.schema_version() + 1;
    if !matches!(
        EventData::decode_payload(ty, unknown, &bytes),
        Err(PayloadError::UnknownVersion { .. })
    ) {
        problems.push(format!(
            "schema version {unknown} was not refused as unknown"
        ));
    }
    problems
}

fn check_version(version: u16) {
    let dir = golden_dir(version);
    let mut failures = Vec::new();
    for ty in types_of(version) {
        let json_path = dir.join(format!("{}.json", ty.as_str()));
        let msgpack_path = dir.join(format!("{}.msgpack", ty.as_str()));
        if write_missing() {
            write_missing_pair(ty, version, &json_path, &msgpack_path);
        }
        for problem in check_pair(ty, version, &json_path, &msgpack_path) {
            failures.push(format!("{ty} v{version}: {problem}"));
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
fn every_event_type_has_golden_v1_fixtures_that_still_decode_and_encode() {
    check_version(1);
}

#[test]
fn every_version_2_type_has_golden_v2_fixtures_that_decode_and_encode() {
    check_version(2);
}

#[test]
fn the_latest_version_of_every_type_has_fixtures() {
    for &ty in EventType::ALL {
        let version = ty.schema_version();
        assert!(
            (1..=2).contains(&version),
            "{ty} is written as version {version}: add tests/golden/v{version} and its check"
        );
        assert!(
            golden_dir(version)
                .join(format!("{}.msgpack", ty.as_str()))
                .exists()
                || write_missing()
        );
    }
}

/// Version-1 records of the types now at version 2 read as `treatment:
/// first` with no plan, ECAD, mode, care setting or NHS number status, and
/// mean what they meant.
#[test]
fn version_1_records_upcast_to_the_same_events() {
    for ty in types_of(2) {
        let bytes = std::fs::read(golden_dir(1).join(format!("{}.msgpack", ty.as_str()))).unwrap();
        let (_, data) = EventData::decode_payload(ty, 1, &bytes).unwrap();
        match &data {
            EventData::DecisionToTreat(d) => {
                assert_eq!(
                    (d.kind(), &d.plan_id, d.earliest_clinically_appropriate_date),
                    (openptl_rules::TreatmentKind::First, &None, None)
                );
            }
            EventData::TreatmentStarted(t) => {
                assert_eq!(
                    (t.kind(), &t.plan_id, t.care_setting),
                    (openptl_rules::TreatmentKind::First, &None, None)
                );
            }
            EventData::TreatmentOfferDeclined(t) => assert_eq!(t.plan_id, None),
            EventData::AppointmentAttended(a) => assert_eq!(a.mode, None),
            EventData::ReferralReceived(r) => assert_eq!(r.nhs_number_status, None),
            other => panic!("{ty} decoded as {other:?}"),
        }
        // Written again today (version 2), it decodes to the same event.
        let again = data.encode_payload(NaiveDate::from_ymd_opt(2025, 3, 17).unwrap());
        let (_, back) = EventData::decode_payload(ty, 2, &again).unwrap();
        assert_eq!(back, data, "{ty}");
    }
}

#[test]
fn the_golden_directories_hold_only_fixtures_of_known_event_types() {
    for version in [1, 2] {
        let Ok(entries) = std::fs::read_dir(golden_dir(version)) else {
            continue;
        };
        let known = types_of(version);
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let (stem, ext) = name.rsplit_once('.').unwrap_or((&name, ""));
            assert!(
                EventType::parse(stem).is_some_and(|ty| known.contains(&ty))
                    && matches!(ext, "json" | "msgpack"),
                "{} is not a fixture of a known event type of version {version}",
                path.display()
            );
        }
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
