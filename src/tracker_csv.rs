//! Import from existing trackers (Somerset Cancer Register, InfoFlex and the
//! like): one CSV row per pathway with the CWT-style dates, turned into the
//! pathway events that say the same thing.
//!
//! Columns (a header row is required; order is free; empty cells are absent):
//!
//! | column | required | becomes |
//! |---|---|---|
//! | `pathway_id` | yes | the stream |
//! | `nhs_number`, `trust`, `tumour_site`, `route` | yes | `referral_received` data |
//! | `referral_received` | yes | its date |
//! | `screening_programme`, `referrer`, `nhs_number_status` | no | `referral_received` data |
//! | `consultant_upgraded` | no | `consultant_upgraded` on that date |
//! | `first_seen_dna` | no | `appointment_missed` (first outpatient, did not attend) per date; several dates separated by `;` |
//! | `first_seen` | no | `appointment_attended` (first outpatient) |
//! | `diagnosis_communicated`, `diagnosis_outcome` | no (outcome required with the date) | `diagnosis_communicated` |
//! | `fds_excluded`, `fds_exclusion_reason` | no (reason required with the date) | `fds_excluded` |
//! | `decision_to_treat`, `modality` | no (modality required with the date) | `decision_to_treat` |
//! | `treatment_started` | no (uses `modality`) | `treatment_started` |
//! | `transfers` | no | `pathway_transferred` per `TRUST@YYYY-MM-DD`, separated by `;` |
//! | `pathway_closed`, `close_reason` | no (reason required with the date) | `pathway_closed` |
//!
//! Every event gets a deterministic id (UUID v5 of the pathway id, the event
//! kind and its ordinal, in the data directory's own namespace, kept in
//! `import.key`), so importing the same file again appends nothing, and a
//! later extract with more dates appends only the new events. A row that
//! changes a date already imported is refused (`duplicate_event_id`):
//! record a correction instead. The namespace is random per data directory,
//! so nobody can compute another trust's ids from its pathway ids
//! (decision 102).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;

use serde_json::{json, Value};
use uuid::Uuid;

/// Columns of the layout, in the order the documentation lists them.
pub const COLUMNS: &[&str] = &[
    "pathway_id",
    "nhs_number",
    "trust",
    "tumour_site",
    "route",
    "referral_received",
    "screening_programme",
    "referrer",
    "nhs_number_status",
    "consultant_upgraded",
    "first_seen_dna",
    "first_seen",
    "diagnosis_communicated",
    "diagnosis_outcome",
    "fds_excluded",
    "fds_exclusion_reason",
    "decision_to_treat",
    "modality",
    "treatment_started",
    "transfers",
    "pathway_closed",
    "close_reason",
];

const REQUIRED: &[&str] = &[
    "pathway_id",
    "nhs_number",
    "trust",
    "tumour_site",
    "route",
    "referral_received",
];

/// One row turned into events.
pub struct Row {
    pub line: u64,
    pub envelopes: Vec<Value>,
}

/// A row that could not be turned into events, by line number.
pub struct RowError {
    pub line: u64,
    pub message: String,
}

/// The namespace of the first imports, before ids were keyed: the ids of a
/// data directory that holds such imports stay in it (decision 102).
pub const LEGACY_NAMESPACE: Uuid = Uuid::NAMESPACE_URL;

fn event_id(namespace: &Uuid, pathway_id: &str, kind: &str, n: usize) -> String {
    Uuid::new_v5(
        namespace,
        format!("openptl-csv:{pathway_id}:{kind}:{n}").as_bytes(),
    )
    .to_string()
}

/// The event id an import gives a pathway's referral under `namespace`.
pub fn referral_id(namespace: &Uuid, pathway_id: &str) -> String {
    event_id(namespace, pathway_id, "referral_received", 0)
}

fn date(field: &str, value: &str) -> Result<String, String> {
    openptl_rules::date::parse(value)
        .map(openptl_rules::date::format)
        .ok_or_else(|| format!("`{field}` must be a date written YYYY-MM-DD"))
}

/// Reads the whole file: rows turned into events, and the rows that could not be.
pub fn read(input: impl Read, namespace: &Uuid) -> Result<(Vec<Row>, Vec<RowError>), String> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|e| format!("the header row cannot be read: {e}"))?
        .clone();
    for h in headers.iter() {
        if !COLUMNS.contains(&h) {
            return Err(format!(
                "unknown column `{h}`; the columns are {}",
                COLUMNS.join(", ")
            ));
        }
    }
    for r in REQUIRED {
        if !headers.iter().any(|h| h == *r) {
            return Err(format!("the required column `{r}` is missing"));
        }
    }
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    for record in reader.records() {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(RowError {
                    line,
                    message: format!("the row cannot be read as CSV ({})", e.kind_description()),
                });
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        let cells: BTreeMap<&str, &str> = headers
            .iter()
            .zip(record.iter())
            .filter(|(_, v)| !v.is_empty())
            .collect();
        match row(&cells, namespace) {
            Ok(envelopes) => {
                let pathway_id = cells
                    .get("pathway_id")
                    .copied()
                    .unwrap_or_default()
                    .to_string();
                if !seen.insert(pathway_id.clone()) {
                    errors.push(RowError {
                        line,
                        message: format!("pathway `{pathway_id}` appears on an earlier row too"),
                    });
                    continue;
                }
                rows.push(Row { line, envelopes });
            }
            Err(message) => errors.push(RowError { line, message }),
        }
    }
    Ok((rows, errors))
}

trait KindDescription {
    fn kind_description(&self) -> String;
}

impl KindDescription for csv::Error {
    fn kind_description(&self) -> String {
        match self.kind() {
            csv::ErrorKind::UnequalLengths {
                expected_len, len, ..
            } => {
                format!("{len} cells where the header has {expected_len}")
            }
            csv::ErrorKind::Utf8 { .. } => "not UTF-8".into(),
            _ => "malformed".into(),
        }
    }
}

/// The events of one row, in the order they must be appended.
fn row(cells: &BTreeMap<&str, &str>, namespace: &Uuid) -> Result<Vec<Value>, String> {
    let get = |name: &str| cells.get(name).copied();
    let need = |name: &str| get(name).ok_or_else(|| format!("`{name}` is required"));
    let pathway_id = need("pathway_id")?;
    let mut data = json!({
        "nhs_number": need("nhs_number")?,
        "trust": need("trust")?,
        "tumour_site": need("tumour_site")?,
        "route": need("route")?,
    });
    for optional in ["screening_programme", "referrer", "nhs_number_status"] {
        if let Some(v) = get(optional) {
            data[optional] = json!(v);
        }
    }
    let mut out = vec![json!({
        "event_id": referral_id(namespace, pathway_id),
        "pathway_id": pathway_id,
        "type": "referral_received",
        "occurred_on": date("referral_received", need("referral_received")?)?,
        "data": data,
    })];
    // (date, order within a day, kind, data)
    let mut later: Vec<(String, u8, &str, Value)> = Vec::new();
    let with = |field: &str, companion: &str| -> Result<Option<(String, String)>, String> {
        match (get(field), get(companion)) {
            (None, _) => Ok(None),
            (Some(d), Some(c)) => Ok(Some((date(field, d)?, c.to_string()))),
            (Some(_), None) => Err(format!("`{companion}` is required with `{field}`")),
        }
    };
    if let Some(d) = get("consultant_upgraded") {
        later.push((
            date("consultant_upgraded", d)?,
            0,
            "consultant_upgraded",
            json!({}),
        ));
    }
    if let Some(list) = get("first_seen_dna") {
        for d in list.split(';').map(str::trim).filter(|d| !d.is_empty()) {
            later.push((
                date("first_seen_dna", d)?,
                1,
                "appointment_missed",
                json!({ "kind": "first_outpatient", "reason": "did_not_attend" }),
            ));
        }
    }
    if let Some(d) = get("first_seen") {
        later.push((
            date("first_seen", d)?,
            2,
            "appointment_attended",
            json!({ "kind": "first_outpatient" }),
        ));
    }
    if let Some((d, outcome)) = with("diagnosis_communicated", "diagnosis_outcome")? {
        later.push((
            d,
            3,
            "diagnosis_communicated",
            json!({ "outcome": outcome }),
        ));
    }
    if let Some((d, reason)) = with("fds_excluded", "fds_exclusion_reason")? {
        later.push((d, 4, "fds_excluded", json!({ "reason": reason })));
    }
    if let Some((d, modality)) = with("decision_to_treat", "modality")? {
        later.push((d, 5, "decision_to_treat", json!({ "modality": modality })));
    }
    if let Some(list) = get("transfers") {
        for item in list.split(';').map(str::trim).filter(|t| !t.is_empty()) {
            let (trust, d) = item
                .split_once('@')
                .ok_or_else(|| "`transfers` items are written TRUST@YYYY-MM-DD".to_string())?;
            later.push((
                date("transfers", d)?,
                6,
                "pathway_transferred",
                json!({ "to_trust": trust }),
            ));
        }
    }
    if let Some((d, modality)) = with("treatment_started", "modality")? {
        later.push((d, 7, "treatment_started", json!({ "modality": modality })));
    }
    if let Some((d, reason)) = with("pathway_closed", "close_reason")? {
        later.push((d, 8, "pathway_closed", json!({ "reason": reason })));
    }
    later.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut ordinals: BTreeMap<&str, usize> = BTreeMap::new();
    for (occurred_on, _, kind, data) in later {
        let n = ordinals.entry(kind).or_insert(0);
        out.push(json!({
            "event_id": event_id(namespace, pathway_id, kind, *n),
            "pathway_id": pathway_id,
            "type": kind,
            "occurred_on": occurred_on,
            "data": data,
        }));
        *n += 1;
    }
    Ok(out)
}
