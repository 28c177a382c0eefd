//! Why the rules said no. Every variant is the user's to fix (or, for
//! `VersionConflict`-like cases elsewhere, to retry); storage failures are
//! not rule errors and live in the log crate.

use chrono::NaiveDate;
use serde_json::{json, Value};

/// A rejected event: the input must change before it can be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleError {
    #[error("`{field}` {problem}.")]
    InvalidField { field: String, problem: String },
    #[error("`{field}` is not a valid NHS number: it must be 10 digits with a valid Modulus 11 check digit. Check it against the referral.")]
    InvalidNhsNumber { field: String },
    #[error("`{field}` must be an ODS organisation code: 3 to 5 letters or digits for a trust (for example RXH), up to 6 for a GP practice referrer (for example A81001).")]
    InvalidOdsCode { field: String },
    #[error("`{field}` is not a known tumour site; use one of {expected}.")]
    UnknownTumourSite { field: String, expected: String },
    #[error("`type` is not a known event type; use one of {expected}.")]
    UnknownEventType { expected: String },
    #[error("The date {occurred_on} is after today ({today}); events can only be recorded once they have happened.")]
    OccurredInFuture {
        occurred_on: NaiveDate,
        today: NaiveDate,
    },
    #[error("The date {occurred_on} is before the referral was received ({referral_on}); only a FIT result may be dated before the referral, up to {fit_window_days} days.")]
    OccurredBeforeReferral {
        occurred_on: NaiveDate,
        referral_on: NaiveDate,
        fit_window_days: i64,
    },
    #[error("This pathway has no referral yet: record `referral_received` first.")]
    PathwayNotStarted,
    #[error("This pathway already has a referral: a pathway starts only once. Use a new pathway_id for a new referral, or correct the existing referral.")]
    PathwayExists,
    #[error(
        "A consultant upgrade is only allowed on route `other`; this pathway's route is `{route}`."
    )]
    UpgradeNotAllowed { route: String },
    #[error("A consultant upgrade must come before {what} ({stopped_on}); this one, dated {upgraded_on}, would come after it (events of one day count in the order they were recorded). The 62-day clock it starts could never stop: check the upgrade's date, or record it before the events of that day.")]
    UpgradeAfterStop {
        upgraded_on: NaiveDate,
        stopped_on: NaiveDate,
        what: String,
    },
    #[error("This pathway has already been upgraded; correct the existing upgrade instead.")]
    AlreadyUpgraded,
    #[error("A treatment needs a decision to treat dated on or before it: record `decision_to_treat` first.")]
    TreatmentWithoutDecision,
    #[error("A subsequent treatment (`plan_id` {plan_id}) needs the first treatment started on or before it: record the first `treatment_started` first, or check the dates.")]
    SubsequentBeforeFirstTreatment { plan_id: String },
    #[error("{which} has already started: a treatment period starts once. Correct the existing `treatment_started` instead, or give a new subsequent treatment its own `plan_id`.")]
    TreatmentAlreadyStarted {
        which: String,
        plan_id: Option<String>,
    },
    #[error("No decision to treat of this pathway has `plan_id` {plan_id}: record the subsequent `decision_to_treat` first, or check the plan's name.")]
    UnknownPlan { plan_id: String },
    #[error("This pathway is closed: only tracking notes, corrections and voids can be added. Void the closure to reopen it.")]
    PathwayClosed,
    #[error("The pathway would be closed on {closed_on}, before its `{event_type}` of {occurred_on}: nothing but tracking notes may be dated after a pathway's closure. Date the closure on or after {occurred_on}, or correct that event first.")]
    ClosedBeforeEvent {
        closed_on: NaiveDate,
        event_type: String,
        occurred_on: NaiveDate,
    },
    #[error("Event {event_id} is not an event of this pathway.")]
    UnknownEvent { event_id: String },
    #[error("A referral cannot be voided; close the pathway with `pathway_closed` instead.")]
    CannotVoidReferral,
    #[error("This change would leave the pathway invalid: {rule}")]
    CorrectionBreaksPathway { rule: Box<RuleError> },
}

impl RuleError {
    /// The stable snake_case code of SPEC 4.3.
    pub fn code(&self) -> &'static str {
        match self {
            RuleError::InvalidField { .. } => "invalid_field",
            RuleError::InvalidNhsNumber { .. } => "invalid_nhs_number",
            RuleError::InvalidOdsCode { .. } => "invalid_ods_code",
            RuleError::UnknownTumourSite { .. } => "unknown_tumour_site",
            RuleError::UnknownEventType { .. } => "unknown_event_type",
            RuleError::OccurredInFuture { .. } => "occurred_in_future",
            RuleError::OccurredBeforeReferral { .. } => "occurred_before_referral",
            RuleError::PathwayNotStarted => "pathway_not_started",
            RuleError::PathwayExists => "pathway_exists",
            RuleError::UpgradeNotAllowed { .. } | RuleError::UpgradeAfterStop { .. } => {
                "upgrade_not_allowed"
            }
            RuleError::AlreadyUpgraded => "already_upgraded",
            RuleError::TreatmentWithoutDecision => "treatment_without_decision",
            RuleError::SubsequentBeforeFirstTreatment { .. } => "subsequent_before_first_treatment",
            RuleError::TreatmentAlreadyStarted { .. } => "treatment_already_started",
            RuleError::UnknownPlan { .. } => "unknown_plan",
            RuleError::PathwayClosed => "pathway_closed",
            RuleError::ClosedBeforeEvent { .. } => "closed_before_event",
            RuleError::UnknownEvent { .. } => "unknown_event",
            RuleError::CannotVoidReferral => "cannot_void_referral",
            RuleError::CorrectionBreaksPathway { .. } => "correction_breaks_pathway",
        }
    }

    /// Machine-readable details; never personal data.
    pub fn details(&self) -> Value {
        match self {
            RuleError::InvalidField { field, .. }
            | RuleError::InvalidNhsNumber { field }
            | RuleError::InvalidOdsCode { field }
            | RuleError::UnknownTumourSite { field, .. } => json!({ "field": field }),
            RuleError::UnknownEventType { .. } => json!({ "field": "type" }),
            RuleError::OccurredInFuture { occurred_on, today } => {
                json!({ "occurred_on": occurred_on, "today": today })
            }
            RuleError::OccurredBeforeReferral {
                occurred_on,
                referral_on,
                ..
            } => {
                json!({ "occurred_on": occurred_on, "referral_on": referral_on })
            }
            RuleError::UpgradeNotAllowed { route } => json!({ "route": route }),
            RuleError::UpgradeAfterStop {
                upgraded_on,
                stopped_on,
                ..
            } => {
                json!({ "field": "occurred_on", "occurred_on": upgraded_on, "stopped_on": stopped_on })
            }
            RuleError::ClosedBeforeEvent {
                closed_on,
                event_type,
                occurred_on,
            } => json!({
                "field": "occurred_on",
                "closed_on": closed_on,
                "event_type": event_type,
                "occurred_on": occurred_on,
            }),
            RuleError::UnknownEvent { event_id } => json!({ "event_id": event_id }),
            RuleError::SubsequentBeforeFirstTreatment { plan_id }
            | RuleError::UnknownPlan { plan_id } => {
                json!({ "field": "data.plan_id", "plan_id": plan_id })
            }
            RuleError::TreatmentAlreadyStarted { plan_id, .. } => match plan_id {
                Some(plan_id) => json!({ "plan_id": plan_id }),
                None => json!({ "treatment": "first" }),
            },
            RuleError::CorrectionBreaksPathway { rule } => {
                json!({ "rule": rule.code(), "rule_details": rule.details() })
            }
            _ => json!({}),
        }
    }

    /// The same error, reported against a field nested under `prefix`.
    pub fn under(self, prefix: &str) -> RuleError {
        let nest = |field: String| {
            if field.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{field}")
            }
        };
        match self {
            RuleError::InvalidField { field, problem } => RuleError::InvalidField {
                field: nest(field),
                problem,
            },
            RuleError::InvalidNhsNumber { field } => {
                RuleError::InvalidNhsNumber { field: nest(field) }
            }
            RuleError::InvalidOdsCode { field } => RuleError::InvalidOdsCode { field: nest(field) },
            RuleError::UnknownTumourSite { field, expected } => RuleError::UnknownTumourSite {
                field: nest(field),
                expected,
            },
            other => other,
        }
    }

    pub(crate) fn field(field: impl Into<String>, problem: impl Into<String>) -> RuleError {
        RuleError::InvalidField {
            field: field.into(),
            problem: problem.into(),
        }
    }
}
