//! The monthly Cancer Waiting Times data set submission (SPEC 4.4): one
//! record per pathway and treatment period, its columns named as the NHS
//! Data Dictionary names the data set's items, its values in national codes.
//!
//! Every mapping from our codes to a national code lives here, once, with a
//! table test per code list. A national value we could not confirm from a
//! source is never guessed: the item is left empty (`docs/cwt-dataset.md`
//! lists each one and where we looked).

use chrono::NaiveDate;
use serde::Serialize;

use crate::codes::*;
use crate::first_seen::trust_on;
use crate::ids::OdsCode;
use crate::pathway::{Clock, PathwayState};
use crate::period::TreatmentPeriod;
use crate::report::Period;

/// The two identifying items, first in every record; the caller fills the
/// pathway identifier and masks both for roles that may not see them.
pub const IDENTIFIER_COLUMNS: [&str; 2] = ["NHS NUMBER", "PATIENT PATHWAY IDENTIFIER"];

/// The other items, in the order of [`CwtRecord::items`].
pub const COLUMNS: [&str; 26] = [
    "ORGANISATION IDENTIFIER (PATIENT PATHWAY IDENTIFIER ISSUER)",
    "SOURCE OF REFERRAL FOR OUT-PATIENTS",
    "PRIORITY TYPE CODE",
    "CANCER REFERRAL TO TREATMENT PERIOD START DATE",
    "CONSULTANT UPGRADE DATE",
    "ORGANISATION SITE IDENTIFIER (OF PROVIDER CONSULTANT UPGRADE)",
    "DATE FIRST SEEN",
    "ORGANISATION SITE IDENTIFIER (OF PROVIDER FIRST SEEN)",
    "WAITING TIME ADJUSTMENT (FIRST SEEN)",
    "WAITING TIME ADJUSTMENT REASON (FIRST SEEN)",
    "CANCER FASTER DIAGNOSIS PATHWAY END DATE",
    "CANCER FASTER DIAGNOSIS PATHWAY END REASON",
    "CANCER FASTER DIAGNOSIS PATHWAY EXCLUSION REASON",
    "OUTCOME COMMUNICATION METHOD",
    "PRIMARY DIAGNOSIS (ICD)",
    "CANCER TREATMENT EVENT TYPE",
    "CANCER TREATMENT PERIOD START DATE",
    "TREATMENT START DATE (CANCER)",
    "CANCER TREATMENT MODALITY",
    "CANCER CARE SETTING (TREATMENT)",
    "WAITING TIME ADJUSTMENT (TREATMENT)",
    "WAITING TIME ADJUSTMENT REASON (TREATMENT)",
    "ORGANISATION SITE IDENTIFIER (TREATMENT START DATE CANCER)",
    "TRANSFER TO TREATMENT DATE",
    "ORGANISATION IDENTIFIER (ACCOUNTABLE INVESTIGATING PROVIDER)",
    // Last, so that the columns before it kept their places (decision 168).
    "NHS NUMBER STATUS INDICATOR CODE",
];

/// NHS NUMBER STATUS INDICATOR CODE, as the NHS Data Dictionary lists it
/// (attribute NHS NUMBER STATUS INDICATOR CODE: `01` number present and
/// verified … `08` trace postponed, baby under six weeks old). `07`
/// (number not present, trace not required) has no status of ours: a
/// referral always carries a number. Not held when the referral does not
/// say.
pub fn nhs_number_status(status: NhsNumberStatus) -> &'static str {
    match status {
        NhsNumberStatus::Verified => "01",
        NhsNumberStatus::NotTraced => "02",
        NhsNumberStatus::TraceRequired => "03",
        NhsNumberStatus::TraceNoMatch => "04",
        NhsNumberStatus::TraceConflict => "05",
        NhsNumberStatus::TraceInProgress => "06",
        NhsNumberStatus::TracePostponed => "08",
    }
}

/// SOURCE OF REFERRAL FOR OUT-PATIENTS: `17` a National Screening
/// Programme; `03` a General Medical Practitioner, for an urgent referral
/// that names its referring practice (`referrer` is a GP practice code,
/// SPEC 3.2). Anything else is not held.
pub fn source_of_referral(route: Route, referrer_given: bool) -> Option<&'static str> {
    match route {
        Route::Screening => Some("17"),
        Route::UrgentSuspectedCancer | Route::BreastSymptomatic if referrer_given => Some("03"),
        _ => None,
    }
}

/// PRIORITY TYPE CODE: `3` (Two Week Wait, now "Urgent Suspected Cancer or
/// Breast Symptomatic") for the urgent suspected cancer and breast
/// symptomatic routes; `2` (Urgent) for a referral from a national screening
/// programme, which the data set records as PRIORITY TYPE `2` with SOURCE OF
/// REFERRAL FOR OUT-PATIENTS `17` (decision 160). The original priority of
/// an upgraded or recurrence pathway is not held.
pub fn priority_type(route: Route) -> Option<&'static str> {
    match route {
        Route::UrgentSuspectedCancer | Route::BreastSymptomatic => Some("3"),
        Route::Screening => Some("2"),
        Route::Other | Route::Recurrence => None,
    }
}

/// WAITING TIME ADJUSTMENT REASON (FIRST SEEN): `3` Did Not Attend when
/// there is a first-seen adjustment (SPEC 2.3), `9` no adjustment.
pub fn first_seen_adjustment_reason(adjustment_days: i64) -> &'static str {
    if adjustment_days > 0 {
        "3"
    } else {
        "9"
    }
}

/// CANCER TREATMENT EVENT TYPE: `01` first definitive treatment for a new
/// primary cancer, `02` second or subsequent treatment for a new primary
/// cancer. A recurrence pathway's type (local, regional, distant or
/// multiple recurrence, metastatic disease) is not held.
pub fn treatment_event_type(route: Route, treatment: TreatmentKind) -> Option<&'static str> {
    match (route, treatment) {
        (Route::Recurrence, _) => None,
        (_, TreatmentKind::First) => Some("01"),
        (_, TreatmentKind::Subsequent) => Some("02"),
    }
}

/// CANCER TREATMENT MODALITY, where our modality names one national code:
/// surgery `23` (excluding enabling treatment; the former `01` was retired
/// on 1 October 2020), chemoradiotherapy `04` (a code of its own),
/// active monitoring `08` (excluding non-specialist palliative care), other
/// `97`. An anti-cancer drug (cytotoxic, hormone, immunotherapy or other),
/// radiotherapy (teletherapy, brachytherapy, proton …) and palliative care
/// (specialist or not) each span several national codes: not held.
pub fn treatment_modality(modality: Modality) -> Option<&'static str> {
    match modality {
        Modality::Surgery => Some("23"),
        Modality::Chemoradiotherapy => Some("04"),
        Modality::ActiveMonitoring => Some("08"),
        Modality::Other => Some("97"),
        Modality::AnticancerDrug | Modality::Radiotherapy | Modality::PalliativeCare => None,
    }
}

/// CANCER CARE SETTING (TREATMENT): `99` Unknown (Not Recorded) when the
/// treatment records no setting. Our `admitted` does not say ordinary
/// admission (`01`) or day case (`02`), and `non_admitted` does not say
/// out-patient (`03`) or another setting (`04`): not held.
pub fn care_setting(setting: Option<TreatmentSetting>) -> Option<&'static str> {
    match setting {
        None => Some("99"),
        Some(TreatmentSetting::Admitted | TreatmentSetting::NonAdmitted) => None,
    }
}

/// One record of the submission (without its identifiers).
///
/// Its items are kept one after another in one string (a month's
/// submission at alliance scale is hundreds of thousands of records: one
/// allocation each rather than one per item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CwtRecord {
    /// The values of [`COLUMNS`], in order, one after another; empty when
    /// not held.
    text: String,
    /// Where each item ends in `text`.
    ends: [u32; COLUMNS.len()],
    /// The trust whose users may see the record, and its sort key: the
    /// treating trust; the current trust for a record with no treatment.
    pub trust: OdsCode,
    /// After a transfer, the accountable investigating provider, whose
    /// users may see it too.
    pub also: Option<OdsCode>,
}

impl CwtRecord {
    /// The values of [`COLUMNS`], in order; empty when not held.
    pub fn items(&self) -> impl ExactSizeIterator<Item = &str> + Clone + '_ {
        // Each item starts where the one before ended: read in one pass
        // (a month's submission is millions of items).
        let mut start = 0;
        self.ends.iter().map(move |&end| {
            let item = &self.text[start..end as usize];
            start = end as usize;
            item
        })
    }

    /// The value of `COLUMNS[i]`.
    pub fn item(&self, i: usize) -> &str {
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1] as usize,
        };
        &self.text[start..self.ends[i] as usize]
    }

    /// Its items' bytes, together.
    pub fn items_len(&self) -> usize {
        self.text.len()
    }

    /// The trusts whose users may see the record.
    pub fn trusts(&self) -> impl Iterator<Item = &OdsCode> {
        std::iter::once(&self.trust).chain(&self.also)
    }
}

impl Serialize for CwtRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(COLUMNS.len()))?;
        for (name, value) in COLUMNS.iter().zip(self.items()) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// A record's items, written one after another.
struct Items {
    text: String,
    ends: [u32; COLUMNS.len()],
    next: usize,
}

impl Items {
    fn new() -> Items {
        Items {
            // Room for a record's usual items: codes, a few dates.
            text: String::with_capacity(96),
            ends: [0; COLUMNS.len()],
            next: 0,
        }
    }

    /// Ends the item written since the last.
    fn end(&mut self) -> &mut Items {
        if let Some(end) = self.ends.get_mut(self.next) {
            *end = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
        }
        self.next += 1;
        self
    }

    fn text(&mut self, value: &str) -> &mut Items {
        self.text.push_str(value);
        self.end()
    }

    fn code(&mut self, value: Option<&str>) -> &mut Items {
        self.text(value.unwrap_or_default())
    }

    fn date(&mut self, value: Option<NaiveDate>) -> &mut Items {
        if let Some(d) = value {
            crate::date::write_to(&mut self.text, d);
        }
        self.end()
    }

    fn number(&mut self, value: i64) -> &mut Items {
        use std::fmt::Write;
        let _ = write!(self.text, "{value}");
        self.end()
    }

    fn empty(&mut self, n: usize) -> &mut Items {
        for _ in 0..n {
            self.end();
        }
        self
    }

    fn record(mut self, trust: OdsCode, also: Option<OdsCode>) -> CwtRecord {
        debug_assert_eq!(self.next, COLUMNS.len());
        // Items never written are empty (never a panic when read).
        while self.next < COLUMNS.len() {
            self.end();
        }
        CwtRecord {
            text: self.text,
            ends: self.ends,
            trust,
            also,
        }
    }
}

/// The end of the FDS pathway: its stop, or the date it was excluded.
fn fds_end(state: &PathwayState) -> Option<NaiveDate> {
    match state.clocks.fds.status {
        ClockStatus::Excluded => state.fds_excluded_on(),
        ClockStatus::Met | ClockStatus::Breached => state.clocks.fds.stop,
        _ => None,
    }
}

/// A period whose treatment started (its 31-day clock stopped by it).
fn treated_on(clock: &Clock) -> Option<NaiveDate> {
    (clock.stop_reason == Some(StopReason::TreatmentStarted)
        && matches!(clock.status, ClockStatus::Met | ClockStatus::Breached))
    .then_some(clock.stop)
    .flatten()
}

/// The months a pathway has records in ([`cwt_records`] gives some for
/// exactly these), each once, in no particular order: what lets today's
/// submission read only the pathways with records in its month.
pub fn record_months(state: &PathwayState) -> Vec<Period> {
    let mut months: Vec<Period> = fds_end(state)
        .into_iter()
        .chain(
            state
                .treatment_periods
                .iter()
                .filter_map(|p| treated_on(&p.clock)),
        )
        .map(Period::of)
        .collect();
    months.sort_unstable();
    months.dedup();
    months
}

/// The records of one pathway for `period`: one per treatment period whose
/// treatment started in the month; else one, with the treatment items
/// empty, when its FDS pathway ended in the month; else none.
pub fn cwt_records(state: &PathwayState, period: Period) -> Vec<CwtRecord> {
    let treated: Vec<&TreatmentPeriod> = state
        .treatment_periods
        .iter()
        .filter(|p| treated_on(&p.clock).is_some_and(|d| period.contains(d)))
        .collect();
    let fds_ended = fds_end(state).is_some_and(|d| period.contains(d));
    if treated.is_empty() {
        return if fds_ended {
            vec![record(state, None)]
        } else {
            Vec::new()
        };
    }
    treated
        .into_iter()
        .map(|p| record(state, Some(p)))
        .collect()
}

fn record(state: &PathwayState, period: Option<&TreatmentPeriod>) -> CwtRecord {
    let route = state.route;
    let facts = &state.record;
    let upgrade = (route == Route::Other)
        .then_some(state.clocks.d62.start)
        .flatten();
    let at = |d: NaiveDate| *trust_on(&state.referring_trust, &state.transfers, d);
    let seen = state.first_seen.as_ref();
    let mut items = Items::new();
    items
        .text(state.referring_trust.as_str())
        .code(source_of_referral(route, facts.referrer_given))
        .code(priority_type(route))
        .date((route != Route::Recurrence).then_some(state.referred_on))
        .date(upgrade)
        .code(upgrade.map(at).as_ref().map(OdsCode::as_str))
        .date(seen.map(|s| s.date))
        .code(seen.map(|s| s.trust.as_str()));
    if route.has_d62() {
        items
            .number(facts.first_seen_adjustment_days)
            .text(first_seen_adjustment_reason(
                facts.first_seen_adjustment_days,
            ));
    } else {
        items.empty(2);
    }
    items
        .date(fds_end(state))
        // END REASON, EXCLUSION REASON, OUTCOME COMMUNICATION METHOD: their
        // national code values are not confirmed (docs/cwt-dataset.md).
        .empty(3)
        .code(facts.primary_diagnosis.as_deref());
    match period {
        None => {
            items
                .empty(10)
                .code(facts.nhs_number_status.map(nhs_number_status));
            items.record(state.trust, None)
        }
        Some(p) => {
            let clock = &p.clock;
            let treated = treated_on(clock).expect("records are made for treated periods");
            // The trust holding it when the treatment was folded (a
            // transfer of its day recorded after it came after it).
            let treating = p.treated_by.unwrap_or_else(|| at(treated));
            // The transfer date and the accountable investigating provider
            // belong to the 62-day pathway: the first period, after a
            // transfer to the treating trust (as the fold found it).
            let transfer = (p.treatment == TreatmentKind::First)
                .then_some(facts.transfer_to_treatment)
                .flatten()
                .filter(|_| state.referring_trust != treating);
            items
                .code(treatment_event_type(route, p.treatment))
                .date(clock.start)
                .date(Some(treated))
                .code(treatment_modality(p.modality))
                .code(care_setting(p.care_setting))
                .number(clock.adjustment_days)
                // WAITING TIME ADJUSTMENT REASON (TREATMENT): not confirmed.
                .empty(1)
                .text(treating.as_str())
                .date(transfer)
                .code(transfer.map(|_| state.referring_trust.as_str()))
                .code(facts.nhs_number_status.map(nhs_number_status));
            items.record(treating, transfer.map(|_| state.referring_trust))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_of_referral_codes() {
        let cases = [
            (Route::Screening, false, Some("17")),
            (Route::Screening, true, Some("17")),
            (Route::UrgentSuspectedCancer, true, Some("03")),
            (Route::BreastSymptomatic, true, Some("03")),
            (Route::UrgentSuspectedCancer, false, None),
            (Route::Other, true, None),
            (Route::Recurrence, true, None),
        ];
        for (route, referrer, expected) in cases {
            assert_eq!(
                source_of_referral(route, referrer),
                expected,
                "{route} {referrer}"
            );
        }
    }

    #[test]
    fn priority_type_codes() {
        let cases = [
            (Route::UrgentSuspectedCancer, Some("3")),
            (Route::BreastSymptomatic, Some("3")),
            (Route::Screening, Some("2")),
            (Route::Other, None),
            (Route::Recurrence, None),
        ];
        for (route, expected) in cases {
            assert_eq!(priority_type(route), expected, "{route}");
        }
    }

    #[test]
    fn first_seen_adjustment_reason_codes() {
        for (days, expected) in [(0, "9"), (1, "3"), (12, "3")] {
            assert_eq!(first_seen_adjustment_reason(days), expected, "{days}");
        }
    }

    #[test]
    fn treatment_event_type_codes() {
        let cases = [
            (
                Route::UrgentSuspectedCancer,
                TreatmentKind::First,
                Some("01"),
            ),
            (Route::Screening, TreatmentKind::First, Some("01")),
            (Route::Other, TreatmentKind::First, Some("01")),
            (
                Route::BreastSymptomatic,
                TreatmentKind::Subsequent,
                Some("02"),
            ),
            (Route::Recurrence, TreatmentKind::First, None),
            (Route::Recurrence, TreatmentKind::Subsequent, None),
        ];
        for (route, kind, expected) in cases {
            assert_eq!(
                treatment_event_type(route, kind),
                expected,
                "{route} {kind}"
            );
        }
    }

    #[test]
    fn treatment_modality_codes() {
        let cases = [
            (Modality::Surgery, Some("23")),
            (Modality::AnticancerDrug, None),
            (Modality::Radiotherapy, None),
            (Modality::Chemoradiotherapy, Some("04")),
            (Modality::ActiveMonitoring, Some("08")),
            (Modality::PalliativeCare, None),
            (Modality::Other, Some("97")),
        ];
        assert_eq!(cases.len(), Modality::ALL.len());
        for (modality, expected) in cases {
            assert_eq!(treatment_modality(modality), expected, "{modality}");
        }
    }

    #[test]
    fn nhs_number_status_codes() {
        let cases = [
            (NhsNumberStatus::Verified, "01"),
            (NhsNumberStatus::NotTraced, "02"),
            (NhsNumberStatus::TraceRequired, "03"),
            (NhsNumberStatus::TraceNoMatch, "04"),
            (NhsNumberStatus::TraceConflict, "05"),
            (NhsNumberStatus::TraceInProgress, "06"),
            (NhsNumberStatus::TracePostponed, "08"),
        ];
        assert_eq!(cases.len(), NhsNumberStatus::ALL.len());
        for (status, expected) in cases {
            assert_eq!(nhs_number_status(status), expected, "{status}");
        }
    }

    #[test]
    fn care_setting_codes() {
        let cases = [
            (None, Some("99")),
            (Some(TreatmentSetting::Admitted), None),
            (Some(TreatmentSetting::NonAdmitted), None),
        ];
        for (setting, expected) in cases {
            assert_eq!(care_setting(setting), expected, "{setting:?}");
        }
    }

    /// An event as (type, date, data).
    type Ev<'a> = (&'a str, &'a str, serde_json::Value);

    fn state(events: &[Ev]) -> PathwayState {
        use crate::event::{EventData, EventType};
        use crate::history::EffectiveEvent;
        use std::borrow::Cow;
        let events: Vec<EffectiveEvent> = events
            .iter()
            .enumerate()
            .map(|(i, (ty, on, data))| EffectiveEvent {
                event_id: uuid::Uuid::nil(),
                version: i as u64 + 1,
                occurred_on: crate::date::parse(on).unwrap(),
                data: Cow::Owned(
                    EventData::from_json(EventType::parse(ty).unwrap(), data.clone()).unwrap(),
                ),
            })
            .collect();
        let as_of = NaiveDate::from_ymd_opt(2025, 4, 30).unwrap();
        crate::pathway::evaluate(&events, as_of, &crate::RulesConfig::defaults()).unwrap()
    }

    fn referral(route: &str) -> (&'static str, &'static str, serde_json::Value) {
        (
            "referral_received",
            "2025-01-06",
            serde_json::json!({"nhs_number": "9434765919", "trust": "RXH", "tumour_site": "skin", "route": route}),
        )
    }

    fn item<'r>(record: &'r CwtRecord, name: &str) -> &'r str {
        let at = COLUMNS.iter().position(|c| *c == name).unwrap();
        record.item(at)
    }

    #[test]
    fn which_pathways_and_periods_make_records() {
        use serde_json::json;
        let march = Period::parse("2025-03").unwrap();
        let dtt = |on, treatment: &str| {
            let mut data = json!({"modality": "surgery", "treatment": treatment});
            if treatment == "subsequent" {
                data["plan_id"] = json!("rt");
            }
            ("decision_to_treat", on, data)
        };
        let treated = |on, treatment: &str| {
            let mut data = json!({"modality": "surgery", "treatment": treatment});
            if treatment == "subsequent" {
                data["plan_id"] = json!("rt");
            }
            ("treatment_started", on, data)
        };
        // (case, events, the records' CANCER TREATMENT EVENT TYPE)
        let cases: Vec<(&str, Vec<Ev>, Vec<&str>)> = vec![
            (
                "referred only",
                vec![referral("urgent_suspected_cancer")],
                vec![],
            ),
            (
                "FDS excluded in March: one untreated record",
                vec![
                    referral("urgent_suspected_cancer"),
                    (
                        "fds_excluded",
                        "2025-03-10",
                        json!({"reason": "patient_choice"}),
                    ),
                ],
                vec![""],
            ),
            (
                "FDS ended in February, nothing in March",
                vec![
                    referral("urgent_suspected_cancer"),
                    (
                        "diagnosis_communicated",
                        "2025-02-03",
                        json!({"outcome": "cancer_ruled_out"}),
                    ),
                ],
                vec![],
            ),
            (
                "first treatment in February, subsequent in March",
                vec![
                    referral("urgent_suspected_cancer"),
                    dtt("2025-02-01", "first"),
                    treated("2025-02-10", "first"),
                    dtt("2025-02-20", "subsequent"),
                    treated("2025-03-04", "subsequent"),
                ],
                vec!["02"],
            ),
            (
                "a recurrence treated in March",
                vec![
                    referral("recurrence"),
                    dtt("2025-03-01", "first"),
                    treated("2025-03-20", "first"),
                ],
                vec![""],
            ),
        ];
        for (case, events, types) in cases {
            let records = cwt_records(&state(&events), march);
            let got: Vec<&str> = records
                .iter()
                .map(|r| item(r, "CANCER TREATMENT EVENT TYPE"))
                .collect();
            assert_eq!(got, types, "{case}");
            for r in &records {
                assert_eq!(r.items().len(), COLUMNS.len(), "{case}");
                assert_eq!(
                    r.items_len(),
                    r.items().map(str::len).sum::<usize>(),
                    "{case}"
                );
                let each: Vec<&str> = (0..COLUMNS.len()).map(|i| r.item(i)).collect();
                assert_eq!(r.items().collect::<Vec<_>>(), each, "{case}");
            }
        }
        let excluded = cwt_records(
            &state(&[
                referral("urgent_suspected_cancer"),
                (
                    "fds_excluded",
                    "2025-03-10",
                    json!({"reason": "patient_choice"}),
                ),
            ]),
            march,
        );
        assert_eq!(
            item(&excluded[0], "CANCER FASTER DIAGNOSIS PATHWAY END DATE"),
            "2025-03-10"
        );
        assert_eq!(item(&excluded[0], "TREATMENT START DATE (CANCER)"), "");
        let recurrence = cwt_records(
            &state(&[
                referral("recurrence"),
                dtt("2025-03-01", "first"),
                treated("2025-03-20", "first"),
            ]),
            march,
        );
        for name in [
            "CANCER REFERRAL TO TREATMENT PERIOD START DATE",
            "WAITING TIME ADJUSTMENT (FIRST SEEN)",
            "WAITING TIME ADJUSTMENT REASON (FIRST SEEN)",
            "SOURCE OF REFERRAL FOR OUT-PATIENTS",
        ] {
            assert_eq!(item(&recurrence[0], name), "", "{name}");
        }
        assert_eq!(
            item(&recurrence[0], "TREATMENT START DATE (CANCER)"),
            "2025-03-20"
        );
    }

    #[test]
    fn the_columns_are_unique() {
        let mut all: Vec<&str> = IDENTIFIER_COLUMNS.iter().chain(&COLUMNS).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), IDENTIFIER_COLUMNS.len() + COLUMNS.len());
    }
}
