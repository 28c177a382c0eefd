//! The event catalogue of SPEC 3.2: one struct per event type, decoded from
//! client JSON with field-precise errors, and encoded for storage as
//! MessagePack with named fields. Stored events are a forever format: each
//! type is written with its latest schema version ([`EventType::schema_version`]);
//! the four types that gained fields in version 2 (SPEC 2.12) keep their
//! version-1 structs, frozen, in [`v1`], read through an upcaster.

use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::codes::*;
use crate::error::RuleError;
use crate::ids::{NhsNumber, OdsCode, PathwayId};

#[path = "event_v1.rs"]
pub mod v1;

/// Declares the catalogue once: the `EventType` codes, the `EventData` sum
/// type and the per-type dispatch (JSON in, JSON out, MessagePack in and out).
macro_rules! catalogue {
    ($($variant:ident = $code:literal),+ $(,)?) => {
        code_enum!(
            /// The type of an event (SPEC 3.2).
            EventType { $($variant = $code),+ }
        );

        /// The typed `data` of an event.
        #[derive(Debug, Clone, PartialEq)]
        pub enum EventData { $($variant($variant)),+ }

        impl EventData {
            pub fn event_type(&self) -> EventType {
                match self { $(EventData::$variant(_) => EventType::$variant),+ }
            }

            /// Decodes and checks client JSON for `ty`; errors name the field.
            pub fn from_json(ty: EventType, value: Value) -> Result<EventData, RuleError> {
                match ty {
                    $(EventType::$variant => {
                        let data: $variant = decode_json(value)?;
                        data.check()?;
                        Ok(EventData::$variant(data))
                    })+
                }
            }

            /// The `data` object as clients send and read it.
            pub fn to_json(&self) -> Value {
                let encoded = match self { $(EventData::$variant(d) => serde_json::to_value(d)),+ };
                encoded.expect("event data always encodes to JSON")
            }

            /// Stored payload: `{ "occurred_on", "data" }` as named MessagePack.
            pub fn encode_payload(&self, occurred_on: NaiveDate) -> Vec<u8> {
                let encoded = match self {
                    $(EventData::$variant(d) => rmp_serde::to_vec_named(&BodyRef { occurred_on, data: d })),+
                };
                encoded.expect("event data always encodes to MessagePack")
            }

            /// The schema version this event is written with.
            pub fn schema_version(&self) -> u16 {
                self.event_type().schema_version()
            }

            /// Reads a stored payload written with `schema_version`: the
            /// latest version directly, version 1 of a type that has a later
            /// one through its upcaster, anything else refused.
            pub fn decode_payload(ty: EventType, schema_version: u16, bytes: &[u8]) -> Result<(NaiveDate, EventData), PayloadError> {
                if schema_version != ty.schema_version() {
                    return match schema_version {
                        1 => v1::decode_upcast(ty, bytes),
                        _ => Err(PayloadError::UnknownVersion { event_type: ty.as_str(), schema_version }),
                    };
                }
                match ty {
                    $(EventType::$variant => {
                        let body: Body<$variant> = rmp_serde::from_slice(bytes)
                            .map_err(|e| PayloadError::Malformed { event_type: ty.as_str(), reason: e.to_string() })?;
                        Ok((body.occurred_on, EventData::$variant(body.data)))
                    })+
                }
            }
        }
    };
}

catalogue!(
    ReferralReceived = "referral_received",
    ConsultantUpgraded = "consultant_upgraded",
    FitResultRecorded = "fit_result_recorded",
    TriageCompleted = "triage_completed",
    AppointmentAttended = "appointment_attended",
    AppointmentMissed = "appointment_missed",
    DiagnosticRequested = "diagnostic_requested",
    DiagnosticPerformed = "diagnostic_performed",
    DiagnosticReported = "diagnostic_reported",
    MdtDiscussed = "mdt_discussed",
    DiagnosisCommunicated = "diagnosis_communicated",
    FdsExcluded = "fds_excluded",
    DecisionToTreat = "decision_to_treat",
    TreatmentOfferDeclined = "treatment_offer_declined",
    TreatmentStarted = "treatment_started",
    PathwayTransferred = "pathway_transferred",
    TumourSiteChanged = "tumour_site_changed",
    PathwayClosed = "pathway_closed",
    TrackingNoteAdded = "tracking_note_added",
    EventCorrected = "event_corrected",
    EventVoided = "event_voided",
);

impl EventType {
    /// The schema version events of this type are written with today. A type
    /// moves to a new version only with the old struct frozen in a module of
    /// its own and an upcaster (SPEC 3.2; version 2: SPEC 2.12).
    pub fn schema_version(self) -> u16 {
        match self {
            EventType::DecisionToTreat
            | EventType::TreatmentStarted
            | EventType::TreatmentOfferDeclined
            | EventType::AppointmentAttended
            | EventType::ReferralReceived => 2,
            _ => 1,
        }
    }

    /// Corrections and voids change other events rather than the pathway.
    pub fn is_amendment(self) -> bool {
        matches!(self, EventType::EventCorrected | EventType::EventVoided)
    }
}

/// The date a stored payload's event occurred on, without decoding its
/// data: every type and schema version stores `{ "occurred_on", "data" }`.
pub fn occurred_on_of_payload(bytes: &[u8]) -> Result<NaiveDate, PayloadError> {
    let body: Body<serde::de::IgnoredAny> =
        rmp_serde::from_slice(bytes).map_err(|e| PayloadError::Malformed {
            event_type: "event",
            reason: e.to_string(),
        })?;
    Ok(body.occurred_on)
}

/// A stored payload that cannot be read: the log is damaged or newer than us.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    #[error("{event_type} has schema version {schema_version}, which this build cannot read")]
    UnknownVersion {
        event_type: &'static str,
        schema_version: u16,
    },
    #[error("{event_type} payload is malformed: {reason}")]
    Malformed {
        event_type: &'static str,
        reason: String,
    },
}

#[derive(Serialize)]
pub(crate) struct BodyRef<'a, T> {
    #[serde(with = "crate::date")]
    occurred_on: NaiveDate,
    data: &'a T,
}

#[derive(Deserialize)]
pub(crate) struct Body<T> {
    #[serde(with = "crate::date")]
    pub(crate) occurred_on: NaiveDate,
    pub(crate) data: T,
}

/// Checks that span fields, after each field decoded on its own.
trait Check {
    fn check(&self) -> Result<(), RuleError> {
        Ok(())
    }
}

fn text_len(field: &str, text: &str, min: usize, max: usize) -> Result<(), RuleError> {
    let n = text.chars().count();
    if n < min || n > max {
        let problem = if min > 0 {
            format!("must be {min} to {max} characters long (it is {n})")
        } else {
            format!("must be at most {max} characters long (it is {n})")
        };
        return Err(RuleError::field(field, problem));
    }
    Ok(())
}

fn opt_text_len(field: &str, text: &Option<String>, max: usize) -> Result<(), RuleError> {
    text.as_deref()
        .map_or(Ok(()), |t| text_len(field, t, 0, max))
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralReceived {
    pub nhs_number: NhsNumber,
    pub trust: OdsCode,
    pub tumour_site: TumourSite,
    pub route: Route,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screening_programme: Option<ScreeningProgramme>,
    /// The referring organisation, usually a GP practice (6-character code).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "OdsCode::deserialize_referrer"
    )]
    pub referrer: Option<OdsCode>,
    /// How far the NHS number was traced, when the referring system says
    /// (version 2; the CWT data set's NHS NUMBER STATUS INDICATOR CODE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nhs_number_status: Option<NhsNumberStatus>,
}

impl Check for ReferralReceived {
    fn check(&self) -> Result<(), RuleError> {
        match (self.route, self.screening_programme) {
            (Route::Screening, None) => Err(RuleError::field(
                "screening_programme",
                format!(
                    "is required when the route is `screening`; use one of {}",
                    ScreeningProgramme::expected()
                ),
            )),
            (route, Some(_)) if route != Route::Screening => Err(RuleError::field(
                "screening_programme",
                "is only recorded when the route is `screening`",
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsultantUpgraded {}
impl Check for ConsultantUpgraded {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FitResultRecorded {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_ug_per_g: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_appropriate: Option<bool>,
}

impl FitResultRecorded {
    pub fn band(&self) -> FitBand {
        match self.value_ug_per_g {
            Some(value) => FitBand::of_value(value),
            None => FitBand::NotAppropriate,
        }
    }
}

impl Check for FitResultRecorded {
    fn check(&self) -> Result<(), RuleError> {
        match (self.value_ug_per_g, self.not_appropriate) {
            (Some(v), None | Some(false)) if v.is_finite() && v >= 0.0 => Ok(()),
            (Some(_), None | Some(false)) => {
                Err(RuleError::field("value_ug_per_g", "must be a number of µg Hb/g, 0 or more"))
            }
            (None, Some(true)) => Ok(()),
            (Some(_), Some(true)) => Err(RuleError::field(
                "not_appropriate",
                "cannot be true when a value is given: send either `value_ug_per_g` or `not_appropriate: true`",
            )),
            (None, _) => Err(RuleError::field(
                "value_ug_per_g",
                "is required (or send `not_appropriate: true` when FIT was not appropriate)",
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageCompleted {
    pub outcome: TriageOutcome,
}
impl Check for TriageCompleted {}

/// Schema version 2 (version 1: [`v1::AppointmentAttended`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppointmentAttended {
    pub kind: AppointmentKind,
    /// Face to face or virtual (CANPTL "first seen"); not recorded in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AttendanceMode>,
}
impl Check for AppointmentAttended {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppointmentMissed {
    pub kind: AppointmentKind,
    pub reason: MissedReason,
}
impl Check for AppointmentMissed {}

/// Shared shape of the three diagnostic events.
macro_rules! diagnostic_event {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            pub test: DiagnosticTest,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            pub request_id: Option<String>,
        }

        impl Check for $name {
            fn check(&self) -> Result<(), RuleError> {
                if let Some(id) = &self.request_id {
                    text_len("request_id", id, 1, 64)?;
                }
                Ok(())
            }
        }
    };
}
diagnostic_event!(DiagnosticRequested);
diagnostic_event!(DiagnosticPerformed);
diagnostic_event!(DiagnosticReported);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MdtDiscussed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

impl Check for MdtDiscussed {
    fn check(&self) -> Result<(), RuleError> {
        opt_text_len("outcome", &self.outcome, 64)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiagnosisCommunicated {
    pub outcome: DiagnosisOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<CommunicationMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icd10: Option<String>,
}

impl Check for DiagnosisCommunicated {
    fn check(&self) -> Result<(), RuleError> {
        let Some(code) = &self.icd10 else {
            return Ok(());
        };
        let b = code.as_bytes();
        let ok = (3..=8).contains(&b.len())
            && b[0].is_ascii_alphabetic()
            && b[1].is_ascii_digit()
            && b[2].is_ascii_digit()
            && b[3..]
                .iter()
                .enumerate()
                .all(|(i, c)| c.is_ascii_alphanumeric() || (i == 0 && *c == b'.'));
        if ok {
            Ok(())
        } else {
            Err(RuleError::field(
                "icd10",
                "must be an ICD-10 code such as C18 or C18.7",
            ))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FdsExcluded {
    pub reason: ExclusionReason,
}
impl Check for FdsExcluded {}

/// Schema version 2 (version 1: [`v1::DecisionToTreat`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionToTreat {
    pub modality: Modality,
    /// `first` when absent (SPEC 2.12); kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub treatment: Option<TreatmentKind>,
    /// Names the treatment period within the pathway (required when subsequent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    /// When the patient is fit to start a subsequent treatment: its period starts then.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::date::option"
    )]
    pub earliest_clinically_appropriate_date: Option<NaiveDate>,
}

impl DecisionToTreat {
    /// Which treatment the decision is for.
    pub fn kind(&self) -> TreatmentKind {
        self.treatment.unwrap_or(TreatmentKind::First)
    }

    /// The subsequent period this decision opens, if it is for one.
    pub fn subsequent_plan(&self) -> Option<&str> {
        plan_of(self.kind(), &self.plan_id)
    }
}

impl Check for DecisionToTreat {
    fn check(&self) -> Result<(), RuleError> {
        check_plan(self.kind(), &self.plan_id)?;
        if self.earliest_clinically_appropriate_date.is_some()
            && self.kind() == TreatmentKind::First
        {
            return Err(RuleError::field(
                "earliest_clinically_appropriate_date",
                "is only given for a subsequent treatment (`treatment: subsequent`): \
                 a first treatment's 31-day clock starts at the decision",
            ));
        }
        Ok(())
    }
}

/// The plan of a subsequent decision or treatment (`None` for a first one).
fn plan_of(kind: TreatmentKind, plan_id: &Option<String>) -> Option<&str> {
    match kind {
        TreatmentKind::First => None,
        TreatmentKind::Subsequent => plan_id.as_deref(),
    }
}

/// A `plan_id` names a subsequent period and is required there (SPEC 3.2).
/// On a first treatment it is optional: a name for the first period that a
/// declined offer may use (decision 86).
fn check_plan(kind: TreatmentKind, plan_id: &Option<String>) -> Result<(), RuleError> {
    match (kind, plan_id) {
        (TreatmentKind::Subsequent, None) => Err(RuleError::field(
            "plan_id",
            "is required for a subsequent treatment: name its plan within the pathway, \
             for example `adjuvant-chemo`",
        )),
        (_, Some(plan)) => check_plan_id(plan),
        (TreatmentKind::First, None) => Ok(()),
    }
}

fn check_plan_id(plan: &str) -> Result<(), RuleError> {
    if PathwayId::parse(plan).is_none() {
        return Err(RuleError::field(
            "plan_id",
            "must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
        ));
    }
    Ok(())
}

/// Schema version 2 (version 1: [`v1::TreatmentOfferDeclined`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreatmentOfferDeclined {
    #[serde(with = "crate::date")]
    pub offered_on: NaiveDate,
    #[serde(with = "crate::date")]
    pub available_from: NaiveDate,
    pub setting: TreatmentSetting,
    /// The period the offer was for: a subsequent plan, or the first period's
    /// name; without it, the first period and the 62-day clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
}

impl Check for TreatmentOfferDeclined {
    fn check(&self) -> Result<(), RuleError> {
        if let Some(plan) = &self.plan_id {
            check_plan_id(plan)?;
        }
        if self.available_from <= self.offered_on {
            return Err(RuleError::field(
                "available_from",
                "must be after `offered_on`",
            ));
        }
        Ok(())
    }
}

/// Schema version 2 (version 1: [`v1::TreatmentStarted`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreatmentStarted {
    pub modality: Modality,
    /// `first` when absent (SPEC 2.12); kept as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub treatment: Option<TreatmentKind>,
    /// The subsequent period this treatment stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub care_setting: Option<TreatmentSetting>,
}

impl TreatmentStarted {
    /// Which treatment this is.
    pub fn kind(&self) -> TreatmentKind {
        self.treatment.unwrap_or(TreatmentKind::First)
    }

    /// The subsequent period this treatment stops, if it is one.
    pub fn subsequent_plan(&self) -> Option<&str> {
        plan_of(self.kind(), &self.plan_id)
    }
}

impl Check for TreatmentStarted {
    fn check(&self) -> Result<(), RuleError> {
        check_plan(self.kind(), &self.plan_id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathwayTransferred {
    pub to_trust: OdsCode,
}
impl Check for PathwayTransferred {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TumourSiteChanged {
    pub tumour_site: TumourSite,
}
impl Check for TumourSiteChanged {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathwayClosed {
    pub reason: CloseReason,
}
impl Check for PathwayClosed {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingNoteAdded {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_action: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::date::option"
    )]
    pub next_action_due: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated: Option<bool>,
}

impl Check for TrackingNoteAdded {
    fn check(&self) -> Result<(), RuleError> {
        text_len("text", &self.text, 1, 2000)?;
        opt_text_len("next_action", &self.next_action, 200)?;
        opt_text_len("owner", &self.owner, 100)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventCorrected {
    pub corrects: Uuid,
    pub reason: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::date::option"
    )]
    pub new_occurred_on: Option<NaiveDate>,
    /// The corrected event type's full `data`, checked against that type when
    /// the correction is accepted (the type is only known from the target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_data: Option<Value>,
}

impl Check for EventCorrected {
    fn check(&self) -> Result<(), RuleError> {
        text_len("reason", &self.reason, 1, 500)?;
        if self.new_occurred_on.is_none() && self.new_data.is_none() {
            return Err(RuleError::field(
                "new_occurred_on",
                "or `new_data` is required: say what the correction changes",
            ));
        }
        if matches!(&self.new_data, Some(v) if !v.is_object()) {
            return Err(RuleError::field(
                "new_data",
                "must be an object: the corrected event's full `data`",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventVoided {
    pub voids: Uuid,
    pub reason: String,
}

impl Check for EventVoided {
    fn check(&self) -> Result<(), RuleError> {
        text_len("reason", &self.reason, 1, 500)
    }
}

mod json;
#[cfg(test)]
mod tests;

pub(crate) use json::decode_json;
