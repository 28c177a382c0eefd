//! Fuzz targets (proptest) for the JSON decoder of event envelopes: any JSON
//! value, and any text, is either accepted or refused with a rule error;
//! it never panics, and an error message never echoes an NHS number it was
//! given.

use openptl_rules::NewEvent;
use proptest::prelude::*;
use serde_json::{json, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        "[a-z_ 0-9.:-]{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("referral_received"),
            Just("tracking_note_added"),
            Just("event_corrected"),
            Just("2025-03-03"),
            Just("9434765919"),
            Just("RXH"),
            Just("lower_gi"),
            Just("urgent_suspected_cancer"),
            Just("00000000-0000-4000-8000-000000000001"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    "[a-z_]{1,16}",
                    Just("pathway_id".to_string()),
                    Just("type".to_string()),
                    Just("occurred_on".to_string()),
                    Just("data".to_string()),
                    Just("nhs_number".to_string()),
                    Just("trust".to_string()),
                    Just("tumour_site".to_string()),
                    Just("route".to_string()),
                    Just("event_id".to_string()),
                    Just("expected_version".to_string()),
                    Just("new_data".to_string()),
                    Just("corrects".to_string()),
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Well-formed envelopes with one field replaced by a random value.
fn near_miss() -> impl Strategy<Value = Value> {
    let base = json!({
        "pathway_id": "P-1", "type": "referral_received", "occurred_on": "2025-03-03",
        "data": { "nhs_number": "943 476 5919", "trust": "RXH", "tumour_site": "lung", "route": "urgent_suspected_cancer" }
    });
    (
        prop_oneof![
            Just(vec!["pathway_id"]),
            Just(vec!["type"]),
            Just(vec!["occurred_on"]),
            Just(vec!["data"]),
            Just(vec!["data", "nhs_number"]),
            Just(vec!["data", "trust"]),
            Just(vec!["data", "route"]),
            Just(vec!["data", "tumour_site"]),
        ],
        json_value(),
    )
        .prop_map(move |(path, value)| {
            let mut v = base.clone();
            let mut target = &mut v;
            for key in &path[..path.len() - 1] {
                target = &mut target[*key];
            }
            target[*path.last().unwrap()] = value;
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_json_is_accepted_or_refused_never_a_panic(value in json_value()) {
        let _ = NewEvent::from_json(value);
    }

    #[test]
    fn near_misses_are_refused_with_messages_that_do_not_echo_the_number(value in near_miss()) {
        if let Err(e) = NewEvent::from_json(value) {
            let message = e.to_string();
            prop_assert!(!message.contains("9434765919") && !message.contains("943 476 5919"), "{}", message);
        }
    }

    #[test]
    fn any_text_body_never_panics(text in "\\PC{0,200}") {
        if let Ok(value) = serde_json::from_str::<Value>(&text) {
            let _ = NewEvent::from_json(value);
        }
    }
}
