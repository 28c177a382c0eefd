//! Schema version 1 of the event types that have a version 2 (SPEC 2.12;
//! the referral's NHS number status, decision 168): frozen exactly as they
//! were released, because events on disk were written with them. Never edit
//! these structs; [`decode_upcast`] reads their bytes and lifts them to the
//! current version (`treatment: first`, no `plan_id`, no ECAD, no `mode`,
//! no `care_setting`, no `nhs_number_status`).

use chrono::NaiveDate;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Body, EventData, EventType, PayloadError};
use crate::codes::{
    AppointmentKind, Modality, Route, ScreeningProgramme, TreatmentSetting, TumourSite,
};
use crate::ids::{NhsNumber, OdsCode};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralReceived {
    pub nhs_number: NhsNumber,
    pub trust: OdsCode,
    pub tumour_site: TumourSite,
    pub route: Route,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screening_programme: Option<ScreeningProgramme>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "OdsCode::deserialize_referrer"
    )]
    pub referrer: Option<OdsCode>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppointmentAttended {
    pub kind: AppointmentKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionToTreat {
    pub modality: Modality,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreatmentOfferDeclined {
    #[serde(with = "crate::date")]
    pub offered_on: NaiveDate,
    #[serde(with = "crate::date")]
    pub available_from: NaiveDate,
    pub setting: TreatmentSetting,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreatmentStarted {
    pub modality: Modality,
}

impl From<ReferralReceived> for super::ReferralReceived {
    fn from(v1: ReferralReceived) -> Self {
        super::ReferralReceived {
            nhs_number: v1.nhs_number,
            trust: v1.trust,
            tumour_site: v1.tumour_site,
            route: v1.route,
            screening_programme: v1.screening_programme,
            referrer: v1.referrer,
            nhs_number_status: None,
        }
    }
}

impl From<AppointmentAttended> for super::AppointmentAttended {
    fn from(v1: AppointmentAttended) -> Self {
        super::AppointmentAttended {
            kind: v1.kind,
            mode: None,
        }
    }
}

impl From<DecisionToTreat> for super::DecisionToTreat {
    fn from(v1: DecisionToTreat) -> Self {
        super::DecisionToTreat {
            modality: v1.modality,
            treatment: None,
            plan_id: None,
            earliest_clinically_appropriate_date: None,
        }
    }
}

impl From<TreatmentOfferDeclined> for super::TreatmentOfferDeclined {
    fn from(v1: TreatmentOfferDeclined) -> Self {
        super::TreatmentOfferDeclined {
            offered_on: v1.offered_on,
            available_from: v1.available_from,
            setting: v1.setting,
            plan_id: None,
        }
    }
}

impl From<TreatmentStarted> for super::TreatmentStarted {
    fn from(v1: TreatmentStarted) -> Self {
        super::TreatmentStarted {
            modality: v1.modality,
            treatment: None,
            plan_id: None,
            care_setting: None,
        }
    }
}

/// Encodes a version-1 payload as version 1 wrote it (for fixtures and tests:
/// the service itself writes only the latest version).
pub fn encode_payload<T: Serialize>(occurred_on: NaiveDate, data: &T) -> Vec<u8> {
    rmp_serde::to_vec_named(&super::BodyRef { occurred_on, data })
        .expect("event data always encodes to MessagePack")
}

fn decode<T: DeserializeOwned>(
    ty: EventType,
    bytes: &[u8],
) -> Result<(NaiveDate, T), PayloadError> {
    let body: Body<T> = rmp_serde::from_slice(bytes).map_err(|e| PayloadError::Malformed {
        event_type: ty.as_str(),
        reason: e.to_string(),
    })?;
    Ok((body.occurred_on, body.data))
}

/// Reads version-1 bytes of a type whose current version is later, and
/// upcasts them. Types still at version 1 are decoded by the caller.
pub(super) fn decode_upcast(
    ty: EventType,
    bytes: &[u8],
) -> Result<(NaiveDate, EventData), PayloadError> {
    Ok(match ty {
        EventType::ReferralReceived => {
            let (day, d) = decode::<ReferralReceived>(ty, bytes)?;
            (day, EventData::ReferralReceived(d.into()))
        }
        EventType::AppointmentAttended => {
            let (day, d) = decode::<AppointmentAttended>(ty, bytes)?;
            (day, EventData::AppointmentAttended(d.into()))
        }
        EventType::DecisionToTreat => {
            let (day, d) = decode::<DecisionToTreat>(ty, bytes)?;
            (day, EventData::DecisionToTreat(d.into()))
        }
        EventType::TreatmentOfferDeclined => {
            let (day, d) = decode::<TreatmentOfferDeclined>(ty, bytes)?;
            (day, EventData::TreatmentOfferDeclined(d.into()))
        }
        EventType::TreatmentStarted => {
            let (day, d) = decode::<TreatmentStarted>(ty, bytes)?;
            (day, EventData::TreatmentStarted(d.into()))
        }
        _ => {
            return Err(PayloadError::UnknownVersion {
                event_type: ty.as_str(),
                schema_version: 1,
            })
        }
    })
}
