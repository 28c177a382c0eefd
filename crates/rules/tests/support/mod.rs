//! The one helper of the table-driven rule tests: runs a case (events in,
//! partial pathway view out) through the pure rules, exactly as the service
//! does: parse, check against history, record, then evaluate as of a date.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use openptl_rules::{
    check_event, effective_events, evaluate, NewEvent, RecordedEvent, RulesConfig,
};
use serde_json::{json, Value};
use uuid::Uuid;

/// The service's "today" in these tests: after every case date.
pub fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()
}

/// Runs one case; returns the problems found (empty when it passes).
pub fn check_case(case: &Value, config: &RulesConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let mut history: Vec<RecordedEvent> = Vec::new();
    let mut ids: Vec<(String, Uuid)> = Vec::new();
    let base_time: DateTime<Utc> = "2026-01-01T00:00:00Z".parse().unwrap();
    let rejected = case.get("expect_rejected");
    for (idx, envelope) in case["events"]
        .as_array()
        .expect("events")
        .iter()
        .enumerate()
    {
        let mut envelope = envelope.clone();
        // Case-local event ids become UUIDs, and references follow them.
        let mut local_uuid = |local: &str| -> Uuid {
            if let Some((_, id)) = ids.iter().find(|(l, _)| l == local) {
                return *id;
            }
            let id = Uuid::new_v5(&Uuid::NAMESPACE_URL, local.as_bytes());
            ids.push((local.to_string(), id));
            id
        };
        if let Some(local) = envelope
            .get("event_id")
            .and_then(Value::as_str)
            .map(str::to_string)
        {
            envelope["event_id"] = json!(local_uuid(&local).to_string());
        }
        for field in ["corrects", "voids"] {
            if let Some(local) = envelope["data"]
                .get(field)
                .and_then(Value::as_str)
                .map(str::to_string)
            {
                envelope["data"][field] = json!(local_uuid(&local).to_string());
            }
        }
        let expected_code = rejected
            .filter(|r| r["event_index"].as_u64() == Some(idx as u64))
            .and_then(|r| r["code"].as_str());
        let outcome = NewEvent::from_json(envelope.clone()).and_then(|new| {
            check_event(&history, new.occurred_on, &new.data, today(), config).map(|()| new)
        });
        match (outcome, expected_code) {
            (Ok(_), Some(code)) => {
                problems.push(format!("event {idx}: accepted, expected rejection {code}"))
            }
            (Err(err), Some(code)) => {
                if err.code() != code {
                    problems.push(format!(
                        "event {idx}: rejected with {}, expected {code}: {err}",
                        err.code()
                    ));
                }
            }
            (Err(err), None) => {
                problems.push(format!("event {idx}: rejected with {}: {err}", err.code()));
                return problems;
            }
            (Ok(new), None) => {
                let version = history.len() as u64 + 1;
                history.push(RecordedEvent {
                    event_id: new.event_id.unwrap_or_else(Uuid::new_v4),
                    version,
                    recorded_at: base_time + Duration::seconds(version as i64),
                    occurred_on: new.occurred_on,
                    data: new.data,
                });
            }
        }
    }
    let Some(expect) = case.get("expect").filter(|e| !e.is_null()) else {
        return problems;
    };
    let as_of = case["as_of"]
        .as_str()
        .and_then(openptl_rules::date::parse)
        .expect("as_of");
    let effective = effective_events(&history).expect("effective events");
    let Some(state) = evaluate(&effective, as_of, config) else {
        problems.push("no pathway as of that date".into());
        return problems;
    };
    let mut view = serde_json::to_value(&state).unwrap();
    view["version"] = json!(history.len());
    let mut expect = expect.clone();
    if let Some(milestones) = expect.as_object_mut().and_then(|e| e.remove("milestones")) {
        for (name, fields) in milestones.as_object().expect("milestones keyed by name") {
            let actual = view["milestones"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["name"] == json!(name));
            compare(
                fields,
                actual.unwrap_or(&Value::Null),
                &format!("milestones[{name}]"),
                &mut problems,
            );
        }
    }
    compare(&expect, &view, "view", &mut problems);
    problems
}

/// Only the fields named in `expected` are compared (as the conformance runner does).
pub fn compare(expected: &Value, actual: &Value, path: &str, problems: &mut Vec<String>) {
    match expected {
        Value::Object(fields) => {
            for (key, value) in fields {
                compare(
                    value,
                    actual.get(key).unwrap_or(&Value::Null),
                    &format!("{path}.{key}"),
                    problems,
                );
            }
        }
        Value::Array(items) => match actual.as_array() {
            Some(actual_items) if actual_items.len() == items.len() => {
                for (i, (e, a)) in items.iter().zip(actual_items).enumerate() {
                    compare(e, a, &format!("{path}[{i}]"), problems);
                }
            }
            _ => problems.push(format!("{path}: expected {expected}, got {actual}")),
        },
        Value::Number(n) if actual.as_f64().is_some() && n.as_f64() == actual.as_f64() => {}
        _ if expected == actual => {}
        _ => problems.push(format!("{path}: expected {expected}, got {actual}")),
    }
}
