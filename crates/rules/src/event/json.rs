//! Client JSON into event structs: a serde failure becomes a [`RuleError`]
//! naming the field (relative to `data`), never repeating the value given.

use super::*;

/// Deserialises `value`, turning a serde failure into a [`RuleError`] that
/// names the field (relative to `data`) and never repeats the value given.
pub(crate) fn decode_json<T: DeserializeOwned>(value: Value) -> Result<T, RuleError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut path: Vec<String> = err
            .path()
            .iter()
            .map(|seg| match seg {
                serde_path_to_error::Segment::Seq { index } => index.to_string(),
                serde_path_to_error::Segment::Map { key } => key.clone(),
                serde_path_to_error::Segment::Enum { variant } => variant.clone(),
                serde_path_to_error::Segment::Unknown => "?".to_string(),
            })
            .collect();
        let message = err.into_inner().to_string();
        if let Some(name) = backticked_after(&message, "missing field `") {
            path.push(name);
            return RuleError::field(path.join("."), "is required");
        }
        if let Some(name) = backticked_after(&message, "unknown field `") {
            if path.last() != Some(&name) {
                path.push(name);
            }
            return RuleError::field(path.join("."), "is not a field of this event type");
        }
        let field = path.join(".");
        match path.last().map(String::as_str) {
            Some("nhs_number") => RuleError::InvalidNhsNumber { field },
            Some("trust" | "to_trust" | "referrer") => RuleError::InvalidOdsCode { field },
            Some("tumour_site") => RuleError::UnknownTumourSite {
                field,
                expected: TumourSite::expected(),
            },
            _ => RuleError::field(field, describe_problem(&message)),
        }
    })
}

fn backticked_after(message: &str, prefix: &str) -> Option<String> {
    let rest = message.strip_prefix(prefix)?;
    rest.split('`').next().map(str::to_string)
}

/// serde's "invalid type: string \"x\", expected ..." repeats the value; keep
/// only what was expected, so no personal data is echoed.
fn describe_problem(message: &str) -> String {
    if message.starts_with("invalid type")
        || message.starts_with("invalid value")
        || message.starts_with("invalid length")
    {
        if let Some((_, expected)) = message.split_once(", expected ") {
            return format!("must be {expected}");
        }
        return "has the wrong type".to_string();
    }
    message.to_string()
}
