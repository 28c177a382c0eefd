//! The OpenAPI 3.0 document of the API, built from the code: every closed
//! vocabulary comes from the enums the server parses with, and the event
//! `data` schemas come from an exhaustive match over the event catalogue, so
//! a new event type does not compile until it is documented here. Served at
//! `GET /v1/openapi.json` and printed by `openptl openapi`; schemathesis
//! fuzzes the real binary against it in CI.

use openptl_app::access::Role;
use openptl_app::{PtlSort, Worklist};
use openptl_rules::counted::{ClockOutcome, FdsOutcome};
use openptl_rules::*;
use serde_json::{json, Map, Value};

fn codes(all: impl IntoIterator<Item = &'static str>) -> Value {
    json!({ "type": "string", "enum": all.into_iter().collect::<Vec<_>>() })
}

macro_rules! vocabulary {
    ($t:ty) => {
        codes(<$t>::ALL.iter().map(|v| v.as_str()))
    };
}

fn ods() -> Value {
    json!({ "type": "string", "pattern": "^[A-Za-z0-9]{3,5}$" })
}

fn date() -> Value {
    json!({ "type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$" })
}

fn text(min: u64, max: u64) -> Value {
    json!({ "type": "string", "minLength": min, "maxLength": max })
}

fn object(required: &[&str], properties: Value) -> Value {
    let mut schema =
        json!({ "type": "object", "properties": properties, "additionalProperties": false });
    // OpenAPI 3.0 (JSON Schema draft 4) wants at least one name in `required`.
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

/// The `data` schema of each event type (SPEC 3.2).
/// A subsequent treatment plan's name within its pathway (SPEC 3.2).
fn plan_id() -> Value {
    json!({ "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" })
}

fn data_schema(event_type: EventType) -> Value {
    let test = || {
        object(
            &["test"],
            json!({ "test": vocabulary!(DiagnosticTest), "request_id": text(1, 64) }),
        )
    };
    match event_type {
        EventType::ReferralReceived => object(
            &["nhs_number", "trust", "tumour_site", "route"],
            json!({
                "nhs_number": { "type": "string", "pattern": "^[0-9 ]{10,12}$",
                                "description": "10 digits (spaces allowed), Modulus 11 valid" },
                "trust": ods(),
                "tumour_site": vocabulary!(TumourSite),
                "route": vocabulary!(Route),
                "screening_programme": vocabulary!(ScreeningProgramme),
                "referrer": { "type": "string", "pattern": "^[A-Za-z0-9]{3,6}$" },
                "nhs_number_status": vocabulary!(NhsNumberStatus),
            }),
        ),
        EventType::ConsultantUpgraded => object(&[], json!({})),
        EventType::FitResultRecorded => json!({
            "oneOf": [
                object(&["value_ug_per_g"], json!({ "value_ug_per_g": { "type": "number", "minimum": 0 } })),
                object(&["not_appropriate"], json!({ "not_appropriate": { "type": "boolean", "enum": [true] } })),
            ]
        }),
        EventType::TriageCompleted => object(
            &["outcome"],
            json!({ "outcome": vocabulary!(TriageOutcome) }),
        ),
        EventType::AppointmentAttended => object(
            &["kind"],
            json!({ "kind": vocabulary!(AppointmentKind), "mode": vocabulary!(AttendanceMode) }),
        ),
        EventType::AppointmentMissed => object(
            &["kind", "reason"],
            json!({ "kind": vocabulary!(AppointmentKind), "reason": vocabulary!(MissedReason) }),
        ),
        EventType::DiagnosticRequested
        | EventType::DiagnosticPerformed
        | EventType::DiagnosticReported => test(),
        EventType::MdtDiscussed => object(&[], json!({ "outcome": text(1, 64) })),
        EventType::DiagnosisCommunicated => object(
            &["outcome"],
            json!({
                "outcome": vocabulary!(DiagnosisOutcome),
                "method": vocabulary!(CommunicationMethod),
                "icd10": { "type": "string", "pattern": "^[A-Z][0-9]{2}(\\.[0-9A-Z]{1,4})?$" },
            }),
        ),
        EventType::FdsExcluded => object(
            &["reason"],
            json!({ "reason": vocabulary!(ExclusionReason) }),
        ),
        // Schema version 2 (SPEC 2.12): `plan_id` is required when the
        // treatment is `subsequent`, and the ECAD is for subsequent ones only.
        EventType::DecisionToTreat => object(
            &["modality"],
            json!({
                "modality": vocabulary!(Modality),
                "treatment": vocabulary!(TreatmentKind),
                "plan_id": plan_id(),
                "earliest_clinically_appropriate_date": date(),
            }),
        ),
        EventType::TreatmentStarted => object(
            &["modality"],
            json!({
                "modality": vocabulary!(Modality),
                "treatment": vocabulary!(TreatmentKind),
                "plan_id": plan_id(),
                "care_setting": vocabulary!(TreatmentSetting),
            }),
        ),
        EventType::TreatmentOfferDeclined => object(
            &["offered_on", "available_from", "setting"],
            json!({
                "offered_on": date(),
                "available_from": date(),
                "setting": vocabulary!(TreatmentSetting),
                "plan_id": plan_id(),
            }),
        ),
        EventType::PathwayTransferred => object(&["to_trust"], json!({ "to_trust": ods() })),
        EventType::TumourSiteChanged => object(
            &["tumour_site"],
            json!({ "tumour_site": vocabulary!(TumourSite) }),
        ),
        EventType::PathwayClosed => {
            object(&["reason"], json!({ "reason": vocabulary!(CloseReason) }))
        }
        EventType::TrackingNoteAdded => object(
            &["text"],
            json!({
                "text": text(1, 2000),
                "next_action": text(0, 200),
                "next_action_due": date(),
                "owner": text(0, 100),
                "escalated": { "type": "boolean" },
            }),
        ),
        EventType::EventCorrected => object(
            &["corrects", "reason"],
            json!({
                "corrects": { "type": "string", "format": "uuid" },
                "reason": text(1, 500),
                "new_occurred_on": date(),
                "new_data": { "type": "object" },
            }),
        ),
        EventType::EventVoided => object(
            &["voids", "reason"],
            json!({ "voids": { "type": "string", "format": "uuid" }, "reason": text(1, 500) }),
        ),
    }
}

fn envelope(event_type: EventType) -> Value {
    object(
        &["pathway_id", "type", "occurred_on", "data"],
        json!({
            "event_id": { "type": "string", "format": "uuid" },
            "pathway_id": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
            "type": { "type": "string", "enum": [event_type.as_str()] },
            "occurred_on": date(),
            "expected_version": { "type": "integer", "minimum": 0 },
            "data": data_schema(event_type),
        }),
    )
}

fn error_responses(responses: &mut Map<String, Value>) {
    responses.insert(
        "429".into(),
        json!({
            "description": "Too many requests: `rate_limited` (this token's rate, or failed sign-ins and invalid tokens from this address) or `busy` (too many views of a past date waiting). Try again after `Retry-After` seconds.",
            "headers": { "Retry-After": { "description": "Seconds to wait", "schema": { "type": "integer", "minimum": 1 } } },
            "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } },
        }),
    );
    for status in ["4XX", "5XX"] {
        responses.insert(
            status.into(),
            json!({ "description": "An error (SPEC 4.3)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } }),
        );
    }
}

/// `GET /v1/milestones/pathways` (decision 190).
fn milestone_pathways_operation() -> Value {
    let nullable = |mut schema: Value| {
        schema["nullable"] = json!(true);
        schema
    };
    let line = object(
        &openptl_app::MILESTONE_COLUMNS,
        json!({
            "pathway_id": { "type": "string" },
            "nhs_number": { "type": "string", "description": "Masked but for its last four digits for roles that may not see it" },
            "trust": { "type": "string", "description": "The trust holding the pathway (where the milestone view counts it)" },
            "tumour_site": vocabulary!(TumourSite),
            "route": vocabulary!(Route),
            "referred_on": date(),
            "milestone": { "type": "string" },
            "due_day": { "type": "integer" },
            "due_date": date(),
            "met_on": nullable(date()),
            "status": vocabulary!(MilestoneStatus),
            "days_late": { "type": "integer", "nullable": true, "description": "Days after the due date it was met (missed) or still is not (overdue)" },
            "fds_status": vocabulary!(ClockStatus),
        }),
    );
    let mut parameters = vec![
        required_query(
            "tumour_site",
            vocabulary!(TumourSite),
            "The tumour site whose template holds the milestone.",
        ),
        required_query(
            "milestone",
            json!({ "type": "string" }),
            "The milestone's name in the site's template (SPEC 2.9).",
        ),
        query("status", vocabulary!(MilestoneStatus), "Only this status."),
        query(
            "period",
            period(),
            "Pathways referred in this month (every month without it), as the milestone view.",
        ),
        query(
            "format",
            codes(["json", "csv"]),
            "Default JSON (or CSV when `Accept: text/csv`).",
        ),
    ];
    parameters.extend(scope_params());
    parameters.extend(at_params());
    parameters.extend(page_params());
    operation(
        "The pathways behind a milestone figure: each pathway the milestone view counts at the site, with the milestone's due date, when it was met and its status, the latest first. Lists patients: not for analysts.",
        parameters,
        (
            "200",
            json!({ "description": "The pathways (CSV: the same columns)", "content": {
                "application/json": { "schema": object(&["tumour_site", "milestone", "status", "period", "position", "total", "offset", "limit", "rows"], page_fields(json!({
                    "tumour_site": vocabulary!(TumourSite),
                    "milestone": { "type": "string" },
                    "status": nullable(vocabulary!(MilestoneStatus)),
                    "period": nullable(period()),
                    "position": { "type": "integer" },
                    "total": { "type": "integer", "description": "Pathways in the whole list" },
                    "rows": { "type": "array", "items": line },
                }))) },
                "text/csv": { "schema": { "type": "string" } },
            } }),
        ),
        false,
    )
}

/// `GET /v1/standards/{standard}/clocks` (decision 187).
/// FDS clocks excluded, by the `fds_excluded` reason (the report's whole
/// and each trust's line).
fn exclusion_counts() -> Value {
    json!({
        "type": "object",
        "description": "FDS only: the excluded clocks by the reason given, so exclusions can be audited (SPEC 2.2); each `by_trust` line has its own",
        "required": ["patient_choice", "clinical_reason", "other"],
        "properties": {
            "patient_choice": { "type": "integer" },
            "clinical_reason": { "type": "integer" },
            "other": { "type": "integer" },
        },
    })
}

fn standard_clocks_operation(aggregate_params: &[Value]) -> Value {
    let nullable = |mut schema: Value| {
        schema["nullable"] = json!(true);
        schema
    };
    // Every standard's columns are required; the FDS's and the 31-day's own
    // are there for theirs.
    let line = object(
        openptl_app::ClockLine::common_columns(),
        json!({
            "pathway_id": { "type": "string" },
            "nhs_number": { "type": "string", "description": "Masked but for its last four digits for roles that may not see it" },
            "trust": { "type": "string", "description": "The trust the clock is counted under (for the 31-day standard, the trust at the treatment; a transferred 62-day pathway has a line per trust's share)" },
            "current_trust": { "type": "string", "description": "The trust holding the pathway as of the view" },
            "allocation": { "type": "array", "nullable": true, "description": "62-day only: every trust's share of a transferred pathway's outcome (SPEC 2.4), so a line at a 0 share says which trust was charged", "items": { "type": "object" } },
            "start_reason": nullable(vocabulary!(PeriodStartReason)),
            "tumour_site": vocabulary!(TumourSite),
            "route": vocabulary!(Route),
            "referred_on": date(),
            "outcome": vocabulary!(ClockOutcome),
            "share": { "type": "number", "description": "The trust's share of the clock: 1; ½, or 0 where the breach is charged to the other trust, after a transfer (SPEC 2.4); 0 for an excluded clock" },
            "start": nullable(date()),
            "stop": nullable(json!({ "type": "string", "format": "date", "description": "The day the clock stopped (treatment started, for the 31-day standard); the day it was excluded, for an excluded FDS clock" })),
            "stop_reason": nullable(vocabulary!(StopReason)),
            "adjustment_days": { "type": "integer" },
            "days": { "type": "integer" },
            "target_days": { "type": "integer" },
            "fds_outcome": nullable(vocabulary!(FdsOutcome)),
            "exclusion_reason": nullable(vocabulary!(ExclusionReason)),
            "treatment": nullable(vocabulary!(TreatmentGroup)),
            "modality_group": nullable(vocabulary!(ModalityGroup)),
            "modality": nullable(vocabulary!(Modality)),
            "plan_id": nullable(json!({ "type": "string" })),
        }),
    );
    let mut parameters = vec![
        path_param("standard", vocabulary!(ClockKind)),
        query(
            "outcome",
            vocabulary!(ClockOutcome),
            "Only the clocks within target or breached; `excluded` (FDS only) lists the excluded clocks, which the figures count apart and are otherwise not listed.",
        ),
        query(
            "fds_outcome",
            vocabulary!(FdsOutcome),
            "FDS only: the clocks of patients told they have cancer, or that it was ruled out.",
        ),
        query(
            "exclusion_reason",
            vocabulary!(ExclusionReason),
            "FDS only: the clocks excluded for this reason (the excluded clocks, so `outcome` may be left out; any other `outcome` is 422).",
        ),
        query(
            "treatment",
            vocabulary!(TreatmentGroup),
            "31-day only: first definitive or subsequent treatments.",
        ),
        query(
            "modality",
            vocabulary!(ModalityGroup),
            "31-day only: one modality group.",
        ),
        query(
            "format",
            codes(["json", "csv"]),
            "Default JSON (or CSV when `Accept: text/csv`).",
        ),
    ];
    parameters.extend(aggregate_params.iter().cloned());
    parameters.extend(page_params());
    operation(
        "The clocks behind a standards figure: each clock the figures of the month count (a line per trust's share), with the same filters and moment as the standards view (`period` defaults to the month of `as_of`), breaches first and longest waits first. Lists patients: not for analysts.",
        parameters,
        (
            "200",
            json!({ "description": "The clocks (CSV: the same columns)", "content": {
                "application/json": { "schema": object(&["standard", "period", "position", "total", "share", "shared_lines", "charged_elsewhere_lines", "offset", "limit", "rows"], page_fields(json!({
                    "standard": vocabulary!(ClockKind),
                    "period": period(),
                    "position": { "type": "integer" },
                    "total": { "type": "integer", "description": "Lines in the whole list" },
                    "share": { "type": "number", "description": "The whole list's shares added up: the figure the filters pick out of the standards view (its `total`, `breached` or `within_target`; with `outcome=excluded`, 0, and `total` is the `excluded` figure)" },
                    "shared_lines": { "type": "integer", "description": "Lines of the whole list with a share of ½: a transferred pathway's 62-day outcome shared between two trusts" },
                    "charged_elsewhere_lines": { "type": "integer", "description": "Lines of the whole list, not excluded, with a share of 0: a transferred pathway's 62-day outcome charged to the other trust" },
                    "rows": { "type": "array", "items": line },
                }))) },
                "text/csv": { "schema": { "type": "string" } },
            } }),
        ),
        false,
    )
}

fn operation(summary: &str, parameters: Vec<Value>, ok: (&str, Value), public: bool) -> Value {
    let mut responses = Map::new();
    responses.insert(ok.0.into(), ok.1);
    error_responses(&mut responses);
    let mut op = json!({ "summary": summary, "parameters": parameters, "responses": responses });
    if public {
        op["security"] = json!([]);
    }
    op
}

fn query(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": false, "schema": schema, "description": description })
}

fn required_query(name: &str, schema: Value, description: &str) -> Value {
    json!({ "name": name, "in": "query", "required": true, "schema": schema, "description": description })
}

fn path_param(name: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": schema })
}

fn list_of(codes: Value) -> Value {
    let values = codes["enum"].clone();
    let alternatives = values
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(Value::as_str)
                .map(regex_escape)
                .collect::<Vec<_>>()
                .join("|")
        })
        .unwrap_or_default();
    json!({ "type": "string", "pattern": format!("^({alternatives})(,({alternatives}))*$") })
}

fn regex_escape(s: &str) -> String {
    s.replace('+', "\\+").replace('.', "\\.")
}

fn json_ok(description: &str, schema: Value) -> Value {
    json!({ "description": description, "content": { "application/json": { "schema": schema } } })
}

fn open_object() -> Value {
    json!({ "type": "object" })
}

fn at_params() -> Vec<Value> {
    vec![
        query(
            "as_of",
            date(),
            "Evaluate clocks on this date (default today).",
        ),
        query(
            "known_at",
            json!({ "type": "string", "format": "date-time" }),
            "Ignore events recorded after this moment.",
        ),
        query(
            "min_position",
            json!({ "type": "integer", "minimum": 0 }),
            "Wait (up to 5 s) until this log position is in the view.",
        ),
    ]
}

/// A list behind a figure's page (decision 214): `offset`, then `limit`.
fn page_params() -> Vec<Value> {
    vec![
        query(
            "offset",
            json!({ "type": "integer", "minimum": 0, "maximum": 100_000_000 }),
            "Lines of the list passed over, in its order (default 0).",
        ),
        query(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 100_000_000 }),
            "At most this many lines after them (default every line). `total` stays the whole list's.",
        ),
    ]
}

/// The fields a list's answer gives of its page (decision 214).
fn page_fields(mut properties: Value) -> Value {
    properties["offset"] = json!({ "type": "integer", "description": "Lines passed over" });
    properties["limit"] = json!({ "type": "integer", "nullable": true, "description": "The most lines asked for (none: every line)" });
    properties
}

fn scope_params() -> Vec<Value> {
    vec![
        query(
            "trust",
            json!({ "type": "string", "pattern": "^[A-Za-z0-9]{3,5}(,[A-Za-z0-9]{3,5})*$" }),
            "Comma-separated ODS codes.",
        ),
        query(
            "alliance",
            json!({ "type": "string" }),
            "A configured alliance.",
        ),
    ]
}

fn period() -> Value {
    json!({ "type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$" })
}

/// `GET /v1/breach-risks` (issue 24).
fn breach_risks_operation() -> Value {
    let row = json!({
        "type": "object",
        "required": ["pathway_id", "clock", "trust", "tumour_site", "route", "start", "days", "target_days", "breach_risk", "reason"],
        "properties": {
            "pathway_id": { "type": "string" },
            "clock": vocabulary!(ClockKind),
            "trust": { "type": "string" },
            "tumour_site": vocabulary!(TumourSite),
            "route": vocabulary!(Route),
            "start": date(),
            "days": { "type": "integer" },
            "target_days": { "type": "integer" },
            "breach_risk": { "type": "number", "minimum": 0, "maximum": 100, "description": "Chance of breaching the target, percent" },
            "reason": { "type": "string", "description": "The main reason, in words" },
        },
    });
    let mut params = vec![
        query("tumour_site", vocabulary!(TumourSite), "One tumour site."),
        query("clock", vocabulary!(ClockKind), "One clock."),
        query(
            "pathway_id",
            json!({ "type": "string", "minLength": 1, "maxLength": 64 }),
            "One pathway's clocks (then `min_risk` defaults to 0).",
        ),
        query(
            "min_risk",
            json!({ "type": "number", "minimum": 0, "maximum": 100 }),
            "Only clocks at or above this risk, percent (default 50: likely to breach).",
        ),
        query(
            "limit",
            json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
            "Rows (default 100).",
        ),
    ];
    params.extend(scope_params());
    params.extend(at_params());
    operation(
        "Running clocks by breach risk, riskiest first: the likely_to_breach worklist (risk of 50% or more), or one pathway's clocks with the main reason in words (docs/forecast.md). Patient-level; advisory",
        params,
        (
            "200",
            json_ok(
                "The clocks",
                json!({
                    "type": "object",
                    "required": ["as_of", "position", "min_risk", "total", "rows"],
                    "properties": {
                        "as_of": date(),
                        "position": { "type": "integer" },
                        "min_risk": { "type": "number" },
                        "total": { "type": "integer" },
                        "rows": { "type": "array", "items": row },
                    },
                }),
            ),
        ),
        false,
    )
}

/// `GET /v1/forecast/{standard}` (issue 24).
fn forecast_operation(aggregate_params: &[Value]) -> Value {
    let figure = json!({
        "type": "object",
        "required": ["stopped", "stopped_within_target", "running", "expected_stops", "expected_breaches"],
        "properties": {
            "stopped": { "type": "number", "description": "Clocks already stopped in the month (shares after transfers)" },
            "stopped_within_target": { "type": "number" },
            "percent_so_far": { "type": "number", "nullable": true },
            "running": { "type": "integer", "description": "Running clocks that may still stop in the month" },
            "expected_stops": { "type": "number", "description": "Further stops expected in the month (running and new clocks)" },
            "expected_breaches": { "type": "number" },
            "percent": { "type": "number", "nullable": true, "description": "Projected month-end percentage within target" },
            "low": { "type": "number", "nullable": true, "description": "80% interval, lower end" },
            "high": { "type": "number", "nullable": true, "description": "80% interval, upper end" },
        },
    });
    let mut by_trust = figure.clone();
    by_trust["properties"]["trust"] = json!({ "type": "string" });
    let mut by_site = figure.clone();
    by_site["properties"]["tumour_site"] = vocabulary!(TumourSite);
    let mut whole = figure;
    for (name, schema) in [
        ("standard", vocabulary!(ClockKind)),
        ("period", period()),
        ("as_of", date()),
        ("position", json!({ "type": "integer" })),
        ("thresholds", open_object()),
        ("by_trust", json!({ "type": "array", "items": by_trust })),
        (
            "by_tumour_site",
            json!({ "type": "array", "items": by_site }),
        ),
    ] {
        whole["properties"][name] = schema;
    }
    operation(
        "A standard's projected month-end performance with its 80% interval: clocks stopped so far plus the expected stops of running and new clocks, learnt from the alliance's own clocks as known on `as_of` (docs/forecast.md). Advisory: never changes a clock, standard or return. A `period` more than 12 months after the month of `as_of` is 422 (its cost grows with the square of the days ahead)",
        {
            let mut p = vec![path_param("standard", vocabulary!(ClockKind))];
            p.extend(aggregate_params.iter().cloned());
            p
        },
        ("200", json_ok("The projection", whole)),
        false,
    )
}

/// A PTL row: only the breach-risk fields are described here (SPEC 4.4
/// lists the rest).
fn ptl_row() -> Value {
    let mut clock = vocabulary!(ClockKind);
    clock["nullable"] = json!(true);
    // OpenAPI 3.0: `nullable` does not widen an `enum`; null is listed.
    if let Some(codes) = clock["enum"].as_array_mut() {
        codes.push(Value::Null);
    }
    clock["description"] = json!("The clock `breach_risk` is of.");
    json!({
        "type": "object",
        "required": ["pathway_id", "breach_risk", "breach_risk_clock", "breach_risk_plan_id"],
        "properties": {
            "pathway_id": { "type": "string" },
            "breach_risk": { "type": "number", "minimum": 0, "maximum": 100, "nullable": true,
                "description": "The chance (percent, one decimal) that the riskiest running clock breaches its target, 100 once past it, under the model of the view's date (docs/forecast.md, decision 154); null when no clock runs" },
            "breach_risk_clock": clock,
            "breach_risk_plan_id": { "type": "string", "nullable": true,
                "description": "The plan id of a subsequent 31-day period `breach_risk` is of" },
        },
    })
}

/// The whole document.
pub fn document() -> Value {
    let envelopes: Vec<Value> = EventType::ALL.iter().map(|t| envelope(*t)).collect();
    let ptl_params = {
        let mut p = vec![
            query(
                "tumour_site",
                list_of(vocabulary!(TumourSite)),
                "Comma-separated tumour sites.",
            ),
            query(
                "route",
                list_of(vocabulary!(Route)),
                "Comma-separated routes.",
            ),
            query(
                "band",
                list_of(vocabulary!(WaitBand)),
                "Comma-separated 62-day wait bands.",
            ),
            query(
                "rag",
                list_of(vocabulary!(Rag)),
                "Comma-separated RAG colours.",
            ),
            query(
                "escalated",
                json!({ "type": "boolean" }),
                "Escalated or not.",
            ),
            query(
                "no_next_action",
                json!({ "type": "boolean" }),
                "Only rows without a next action.",
            ),
            query(
                "next_action_overdue",
                json!({ "type": "boolean" }),
                "Only rows whose next action is overdue.",
            ),
            query(
                "milestone_overdue",
                json!({ "type": "boolean" }),
                "Only rows with an overdue milestone.",
            ),
            query(
                "worklist",
                codes(Worklist::ALL.iter().map(|(c, _)| *c)),
                "A saved worklist. `likely_to_breach`: a running clock not yet past its target with a breach risk of 50% or more (decision 154).",
            ),
            query(
                "min_breach_risk",
                json!({ "type": "number", "minimum": 0, "maximum": 100 }),
                "Only rows whose `breach_risk` (percent) is at least this; rows with no running clock (risk `null`) never pass.",
            ),
            query(
                "sort",
                codes(PtlSort::ALL.iter().map(|(c, _)| *c)),
                "Order of rows; ties by pathway id. `breach_risk`: highest first, then the longest wait; rows without a risk last.",
            ),
            query(
                "limit",
                json!({ "type": "integer", "minimum": 1, "maximum": 1000 }),
                "Rows per page (default 100).",
            ),
            query(
                "cursor",
                json!({ "type": "string" }),
                "The `next_cursor` of the previous page.",
            ),
            query(
                "format",
                codes(["json", "csv"]),
                "`csv` for every matching row as CSV.",
            ),
        ];
        p.extend(scope_params());
        p.extend(at_params());
        p
    };
    let aggregate_params = {
        let mut p = vec![
            query("period", period(), "A month, YYYY-MM."),
            query("tumour_site", vocabulary!(TumourSite), "One tumour site."),
        ];
        p.extend(scope_params());
        p.extend(at_params());
        p
    };
    let standards = operation(
        "Performance against a standard for clocks stopped in a month",
        {
            let mut p = vec![path_param("standard", vocabulary!(ClockKind))];
            p.extend(aggregate_params.clone());
            p
        },
        (
            "200",
            json_ok(
                "The report",
                json!({
                    "type": "object",
                    "properties": {
                        "by_treatment": { "type": "object",
                            "description": "d31 only: every treatment period treated in the month (SPEC 2.12, 4.4), split `first_definitive` / `subsequent`, each with its `by_modality`" },
                        "by_modality": { "type": "object",
                            "description": "d31 only: by modality group (`surgery`, `anticancer_drug`, `radiotherapy`, `other`)" },
                        "excluded": { "type": "integer",
                            "description": "FDS only: clocks excluded in the month (SPEC 2.2); each `by_trust` line has its own" },
                        "excluded_by_reason": exclusion_counts(),
                    },
                }),
            ),
        ),
        false,
    );
    let standard_clocks = standard_clocks_operation(&aggregate_params);
    let milestone_pathways = milestone_pathways_operation();
    let forecast = forecast_operation(&aggregate_params);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "OpenPTL",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Cancer pathway tracking: events in, clocks, PTL, standards, milestones and returns out. See SPEC.md."
        },
        "security": [{ "bearer": [] }],
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": object(&["error"], json!({ "error": object(&["code", "message", "details"], json!({
                    "code": { "type": "string", "pattern": "^[a-z_]+$" },
                    "message": { "type": "string", "minLength": 1 },
                    "details": { "type": "object" },
                })) })),
                "Envelope": { "oneOf": envelopes },
                "Appended": object(&["appended"], json!({ "appended": { "type": "array", "items": object(
                    &["event_id", "pathway_id", "version", "position"],
                    json!({ "event_id": { "type": "string", "format": "uuid" }, "pathway_id": { "type": "string" },
                            "version": { "type": "integer", "minimum": 1 }, "position": { "type": "integer", "minimum": 1 } }),
                ) } })),
                "Role": codes(Role::ALL.iter().map(|r| r.as_str())),
            }
        },
        "paths": {
            "/v1/events": { "post": {
                "summary": "Append one event, or an atomic batch of up to 1000 (SPEC 4.1)",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "oneOf": [
                    { "$ref": "#/components/schemas/Envelope" },
                    object(&["events"], json!({ "events": { "type": "array", "minItems": 1, "maxItems": 1000, "items": { "$ref": "#/components/schemas/Envelope" } } })),
                ] } } } },
                "responses": {
                    "200": json_ok("Every event was already stored (idempotent replay)", json!({ "$ref": "#/components/schemas/Appended" })),
                    "201": json_ok("Appended, durably", json!({ "$ref": "#/components/schemas/Appended" })),
                    "4XX": { "description": "Refused; nothing written", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                    "5XX": { "description": "Not written", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
                }
            } },
            "/v1/pathways/{pathway_id}": { "get": operation(
                "One pathway's clocks, milestones and status (SPEC 4.2)",
                {
                    let mut p = vec![path_param("pathway_id", json!({ "type": "string" }))];
                    p.extend(at_params());
                    p
                },
                ("200", json_ok("The pathway view", json!({
                    "type": "object",
                    "required": ["pathway_id", "version", "status", "clocks", "milestones", "treatment_periods"],
                    "properties": {
                        "pathway_id": { "type": "string" }, "version": { "type": "integer" }, "status": vocabulary!(PathwayStatus),
                        "clocks": { "type": "object" }, "milestones": { "type": "array" },
                        "fds_exclusion": { "type": "object", "required": ["date", "reason"],
                            "description": "Present when the FDS clock is excluded (SPEC 2.2): the date of the exclusion in effect and its reason",
                            "properties": { "date": date(), "reason": vocabulary!(ExclusionReason) } },
                        "treatment_periods": { "type": "array", "items": { "type": "object" },
                            "description": "Every treatment's 31-day period (SPEC 2.12): the first (equal to clocks.d31), then the subsequent ones by start date" },
                    },
                }))),
                false,
            ) },
            "/v1/pathways/{pathway_id}/events": { "get": operation(
                "A pathway's stored history, with who corrected or voided what",
                vec![path_param("pathway_id", json!({ "type": "string" })), query("min_position", json!({ "type": "integer", "minimum": 0 }), "Read-your-writes.")],
                ("200", json_ok("The history", json!({ "type": "object", "required": ["pathway_id", "events"], "properties": { "events": { "type": "array" } } }))),
                false,
            ) },
            "/v1/ptl": { "get": operation(
                "The single PTL (SPEC 4.4)",
                ptl_params,
                ("200", json!({ "description": "A page of rows (JSON), or every matching row (CSV)", "content": {
                    "application/json": { "schema": json!({ "type": "object", "required": ["as_of", "position", "total", "bands", "rows"],
                        "properties": { "rows": { "type": "array", "items": ptl_row() }, "total": { "type": "integer" }, "next_cursor": { "type": "string", "nullable": true } } }) },
                    "text/csv": { "schema": { "type": "string" } },
                } })),
                false,
            ) },
            "/v1/standards/{standard}": { "get": standards },
            "/v1/standards/{standard}/clocks": { "get": standard_clocks },
            "/v1/milestones/pathways": { "get": milestone_pathways },
            "/v1/milestones": { "get": operation("BPTP milestone compliance", aggregate_params, ("200", json_ok("The report", open_object())), false) },
            "/v1/fit": { "get": fit_operation() },
            "/v1/forecast/{standard}": { "get": forecast },
            "/v1/breach-risks": { "get": breach_risks_operation() },
            "/v1/returns/canptl": { "get": operation(
                "The weekly PTL return: 62-day pathways by band, FDS day 28 passed, referrals and upgrades on the three cancer routes (no routine referrals), patients first seen in the week by medium (face_to_face, virtual, not_recorded)",
                {
                    let mut p = vec![required_query("week_ending", date(), "A Sunday that has passed.")];
                    p.extend(scope_params());
                    p.push(query("known_at", json!({ "type": "string", "format": "date-time" }), "As known at."));
                    p.push(query("min_position", json!({ "type": "integer", "minimum": 0 }), "Read-your-writes."));
                    p
                },
                ("200", json_ok("The return", open_object())),
                false,
            ) },
            "/v1/returns/cwt": { "get": operation(
                "The monthly CWT data set submission: one record per pathway and treatment period treated in the month (or per pathway whose FDS pathway ended in it), columns named as the NHS Data Dictionary names the items, values in national codes; an item not held is empty",
                {
                    let mut p = vec![required_query("period", period(), "A month, YYYY-MM."), query("format", codes(["json", "csv"]), "Default CSV, the submission's format. As JSON each record is an object keyed by the national item names, about 1.2 KB a record: a month at alliance scale is hundreds of MB (about ten times its CSV).")];
                    p.extend(scope_params());
                    p.extend(at_params());
                    p
                },
                ("200", json!({ "description": "The submission (CSV, header = national item names; JSON rows keyed by them)", "content": {
                    "text/csv": { "schema": { "type": "string" } },
                    "application/json": { "schema": open_object() },
                } })),
                false,
            ) },
            "/v1/meta": { "get": operation("Vocabularies for building filters", vec![], ("200", json_ok("Codes", open_object())), false) },
            "/v1/session": { "get": operation("Who the caller is", vec![], ("200", json_ok("The caller", object(&["actor", "role", "trusts"], json!({
                "actor": { "type": "string" }, "role": { "$ref": "#/components/schemas/Role" }, "trusts": {},
            })))), false) },
            "/v1/audit": { "get": operation(
                "Recent reads of patient-level data (admin)",
                vec![
                    query("actor", json!({ "type": "string" }), "Only this actor."),
                    query("pathway_id", json!({ "type": "string" }), "Only this pathway."),
                    query("limit", json!({ "type": "integer", "minimum": 1, "maximum": 10000 }), "Entries (default 100)."),
                ],
                ("200", json_ok("Entries, newest first", json!({ "type": "object", "required": ["entries"], "properties": { "entries": { "type": "array" } } }))),
                false,
            ) },
            "/v1/backup": { "post": operation(
                "Back the log up, while it runs, into the directory the service was started with (`--backup-to`; admin). 409 `not_configured` without one, or on PostgreSQL; 503 `backup_failed` (saying why: a full disk, a directory holding another log's backup or a newer one) when it cannot finish, the log unchanged.",
                vec![],
                ("200", json_ok("What the backup holds", json!({ "type": "object", "required": ["position", "head_hash"], "properties": { "position": { "type": "integer" }, "head_hash": { "type": "string" } } }))),
                false,
            ) },
            "/v1/tokens": { "get": operation("Access tokens, without secrets (admin)", vec![], ("200", json_ok("Tokens", json!({ "type": "object", "required": ["tokens"] }))), false) },
            "/healthz": { "get": operation("Alive", vec![], ("200", json_ok("Alive", open_object())), true) },
            "/readyz": { "get": {
                "summary": "Log open and projections caught up",
                "security": [],
                "responses": {
                    "200": json_ok("Ready", open_object()),
                    "503": json_ok("Catching up", open_object()),
                }
            } },
            "/metrics": { "get": operation("Prometheus metrics (scoped to the caller's trusts)", vec![], ("200", json!({ "description": "Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } })), false) },
        }
    })
}

/// `GET /v1/fit` (issue 25): the month's FIT report.
fn fit_operation() -> Value {
    let mut p = vec![
        query(
            "period",
            period(),
            "The month of referral, YYYY-MM (default: the month of `as_of`).",
        ),
        query(
            "format",
            codes(["json", "csv"]),
            "`csv` for a line per trust and the total.",
        ),
    ];
    p.extend(scope_params());
    p.extend(at_params());
    let pct = || json!({ "type": "number", "nullable": true });
    let count = || json!({ "type": "integer", "minimum": 0 });
    let band_mix = || {
        object(
            &["counts", "percent"],
            json!({
                "counts": { "type": "object", "additionalProperties": count() },
                "percent": { "type": "object", "additionalProperties": pct() },
            }),
        )
    };
    let test = object(
        &[
            "test",
            "pathways",
            "bands",
            "without_fit",
            "without_fit_percent",
            "on_fit_below_10",
        ],
        json!({
            "test": codes(openptl_rules::fit::GI_TESTS.iter().map(|t| t.as_str())),
            "pathways": count(), "bands": band_mix(), "without_fit": count(),
            "without_fit_percent": pct(), "on_fit_below_10": count(),
            "without_fit_target_met": { "type": "boolean", "nullable": true },
        }),
    );
    let figures = json!({
        "referrals": count(), "with_fit": count(), "with_fit_percent": pct(),
        "with_fit_target_met": { "type": "boolean", "nullable": true },
        "not_appropriate": count(), "fit_after_referral": count(),
        "within_indicator_days": count(), "indicator_percent": pct(),
        "at_triage": band_mix(), "tests": { "type": "array", "items": test },
    });
    let mut trust = figures.clone();
    trust["trust"] = json!({ "type": "string" });
    let mut report = figures;
    report["period"] = period();
    report["targets"] = json!({ "type": "object" });
    report["by_trust"] =
        json!({ "type": "array", "items": { "type": "object", "properties": trust } });
    report["position"] = json!({ "type": "integer", "minimum": 0 });
    report["days_before_referral"] = count();
    report["indicator_days"] = count();
    operation(
        "FIT and the lower GI pathway (issue 25): lower GI urgent referrals received in a month, by trust at referral and overall: with a FIT result on or before referral and within the primary-care indicator's days, the FIT band at triage, and colonoscopies (flexible sigmoidoscopy, CT colonography beside them) by the FIT band on the day of the test, against the targets of the rules file",
        p,
        ("200", json!({ "description": "The report (JSON), or a line per trust and the total (CSV)", "content": {
            "application/json": { "schema": object(&["period", "referrals", "with_fit", "at_triage", "tests", "targets", "by_trust", "position"], report) },
            "text/csv": { "schema": { "type": "string" } },
        } })),
        false,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_is_documented_and_vocabularies_come_from_the_code() {
        let doc = document();
        let envelopes = doc["components"]["schemas"]["Envelope"]["oneOf"]
            .as_array()
            .unwrap();
        assert_eq!(envelopes.len(), EventType::ALL.len());
        let referral = &envelopes[0]["properties"]["data"]["properties"];
        assert_eq!(
            referral["tumour_site"]["enum"].as_array().unwrap().len(),
            TumourSite::ALL.len()
        );
    }
}
