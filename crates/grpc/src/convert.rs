//! Protobuf messages ↔ the HTTP API's JSON. An appended protobuf envelope is
//! turned into the JSON envelope of SPEC 3.1 and goes through exactly the
//! same parsing and checks as a POST; a stored event goes out through the
//! same JSON the history view shows. The generated messages carry serde
//! derives whose field names are the SPEC's, so the mapping is by name,
//! not by hand.

use serde_json::{json, Map, Value};

use crate::proto::{event_data, Envelope, EventData};

/// Why a message could not be mapped (the client's to fix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unmappable(pub String);

/// Drops `null`s (absent optional fields), recursively.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The one `{key: value}` of an externally tagged value.
fn single_entry(value: Value) -> Option<(String, Value)> {
    match value {
        Value::Object(map) if map.len() == 1 => map.into_iter().next(),
        _ => None,
    }
}

/// An event's type and its `data` object, as the HTTP API has them.
pub fn data_to_json(data: &EventData) -> Result<(String, Value), Unmappable> {
    let kind = data.kind.as_ref().ok_or_else(|| {
        Unmappable("`data` names no event type: set exactly one of its fields".into())
    })?;
    let tagged = serde_json::to_value(kind).map_err(|e| Unmappable(e.to_string()))?;
    let (event_type, mut data) =
        single_entry(tagged).ok_or_else(|| Unmappable("`data` must hold one event".into()))?;
    strip_nulls(&mut data);
    if event_type == "event_corrected" {
        if let Some(new_data) = data.get_mut("new_data") {
            // `new_data` is the corrected event's data alone, untagged.
            let inner = new_data.get("kind").cloned().and_then(single_entry);
            *new_data = match inner {
                Some((_, inner)) => inner,
                None => {
                    return Err(Unmappable(
                        "`event_corrected.new_data` names no event type".into(),
                    ))
                }
            };
        }
    }
    Ok((event_type, data))
}

/// The JSON envelope (SPEC 3.1) of a protobuf one.
pub fn envelope_to_json(envelope: &Envelope) -> Result<Value, Unmappable> {
    let data = envelope
        .data
        .as_ref()
        .ok_or_else(|| Unmappable("the envelope has no `data`".into()))?;
    let (event_type, data) = data_to_json(data)?;
    let mut out = Map::new();
    if let Some(id) = &envelope.event_id {
        out.insert("event_id".into(), json!(id));
    }
    out.insert("pathway_id".into(), json!(envelope.pathway_id));
    out.insert("type".into(), json!(event_type));
    out.insert("occurred_on".into(), json!(envelope.occurred_on));
    if let Some(v) = envelope.expected_version {
        out.insert("expected_version".into(), json!(v));
    }
    out.insert("data".into(), data);
    Ok(Value::Object(out))
}

/// The protobuf data of an event from its type and JSON `data`. An
/// `event_corrected`'s `new_data` needs the corrected event's type.
pub fn data_from_json(
    event_type: &str,
    data: &Value,
    corrected_type: Option<&str>,
) -> Result<EventData, Unmappable> {
    let mut data = data.clone();
    if event_type == "event_corrected" {
        if let Some(new_data) = data.get_mut("new_data") {
            let Some(corrected) = corrected_type else {
                return Err(Unmappable("the corrected event's type is unknown".into()));
            };
            let inner = new_data.take();
            *new_data = json!({ "kind": { corrected: inner } });
        }
    }
    let kind: event_data::Kind = serde_json::from_value(json!({ event_type: data }))
        .map_err(|e| Unmappable(format!("`{event_type}` data: {e}")))?;
    Ok(EventData { kind: Some(kind) })
}
