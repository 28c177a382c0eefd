//! The combined 31-day standard (SPEC 2.12, 4.4): since October 2023 the
//! national 31-day figure counts every treatment period whose treatment
//! started in the month, first and subsequent, under the trust that gave the
//! treatment, and the national statistics split it by treatment (first
//! definitive vs subsequent) and by modality group (surgery, anti-cancer
//! drug, radiotherapy, other).
//!
//! The groupings live here, once, so the standards view, the metrics and
//! the dashboard agree; `report::standards` counts with them.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::codes::*;
use crate::ids::OdsCode;
use crate::pathway::PathwayState;
use crate::period::TreatmentPeriod;
use crate::report::{Performance, Period};

code_enum!(
    /// Which half of the combined 31-day standard a treatment period counts
    /// in (SPEC 4.4).
    TreatmentGroup { FirstDefinitive = "first_definitive", Subsequent = "subsequent" }
);

code_enum!(
    /// The modality groups the national 31-day statistics are published by.
    ModalityGroup {
        Surgery = "surgery",
        AnticancerDrug = "anticancer_drug",
        Radiotherapy = "radiotherapy",
        Other = "other",
    }
);

impl TreatmentGroup {
    /// First periods on the three cancer routes and `other` are first
    /// definitive treatments; subsequent periods, and every period of a
    /// recurrence, are subsequent (SPEC 4.4, ours after public analytics code).
    pub fn of(route: Route, treatment: TreatmentKind) -> TreatmentGroup {
        match (route, treatment) {
            (Route::Recurrence, _) | (_, TreatmentKind::Subsequent) => TreatmentGroup::Subsequent,
            (_, TreatmentKind::First) => TreatmentGroup::FirstDefinitive,
        }
    }
}

impl ModalityGroup {
    /// The group of a treatment modality (SPEC 2.8). Chemoradiotherapy is
    /// delivered and waited for as radiotherapy (ours, decision 111); active
    /// monitoring, palliative care and anything else are `other`.
    pub fn of(modality: Modality) -> ModalityGroup {
        match modality {
            Modality::Surgery => ModalityGroup::Surgery,
            Modality::AnticancerDrug => ModalityGroup::AnticancerDrug,
            Modality::Radiotherapy | Modality::Chemoradiotherapy => ModalityGroup::Radiotherapy,
            Modality::ActiveMonitoring | Modality::PalliativeCare | Modality::Other => {
                ModalityGroup::Other
            }
        }
    }
}

/// The trust a pathway belonged to on `date`: the last transfer on or before
/// it, else the trust at referral.
pub fn trust_on(state: &PathwayState, date: NaiveDate) -> OdsCode {
    state
        .transfers
        .iter()
        .filter(|t| t.occurred_on <= date)
        .max_by_key(|t| t.occurred_on)
        .map_or(state.referring_trust, |t| t.to_trust)
}

/// One treatment period the 31-day standard counts in a month.
#[derive(Debug, Clone, PartialEq)]
pub struct CountedPeriod<'s> {
    pub period: &'s TreatmentPeriod,
    /// The trust at the treatment (SPEC 4.4).
    pub trust: OdsCode,
    pub group: TreatmentGroup,
    pub modality: ModalityGroup,
    pub breached: bool,
}

/// The treatment periods of a pathway whose treatment started in `month`
/// (met or breached; a period ended by the pathway's closure is not a
/// treatment and counts nowhere).
pub fn counted_periods(
    state: &PathwayState,
    month: Period,
) -> impl Iterator<Item = CountedPeriod<'_>> {
    state.treatment_periods.iter().filter_map(move |p| {
        let clock = &p.clock;
        let treated = matches!(clock.status, ClockStatus::Met | ClockStatus::Breached);
        let stop = clock.stop.filter(|d| treated && month.contains(*d))?;
        Some(CountedPeriod {
            period: p,
            trust: p.treated_by.unwrap_or_else(|| trust_on(state, stop)),
            group: TreatmentGroup::of(state.route, p.treatment),
            modality: ModalityGroup::of(p.modality),
            breached: clock.status == ClockStatus::Breached,
        })
    })
}

/// Whether any treatment period of the pathway counts in `month`.
pub fn counts_in(state: &PathwayState, month: Period) -> bool {
    counted_periods(state, month).next().is_some()
}

/// One half of the 31-day standard, and its modality groups.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct GroupPerformance {
    #[serde(flatten)]
    pub performance: Performance,
    /// Every modality group, in the national order, zero when none.
    pub by_modality: BTreeMap<ModalityGroup, Performance>,
}

impl GroupPerformance {
    fn empty() -> GroupPerformance {
        GroupPerformance {
            performance: Performance::default(),
            by_modality: ModalityGroup::ALL
                .iter()
                .map(|g| (*g, Performance::default()))
                .collect(),
        }
    }
}

/// The 31-day standard split as the national statistics split it: the
/// additive fields of `GET /v1/standards/d31` (SPEC 4.4).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct D31Split {
    /// `first_definitive` and `subsequent`, each with its modality groups.
    pub by_treatment: BTreeMap<TreatmentGroup, GroupPerformance>,
    /// Both halves together, by modality group.
    pub by_modality: BTreeMap<ModalityGroup, Performance>,
}

impl Default for D31Split {
    fn default() -> Self {
        D31Split {
            by_treatment: TreatmentGroup::ALL
                .iter()
                .map(|g| (*g, GroupPerformance::empty()))
                .collect(),
            by_modality: ModalityGroup::ALL
                .iter()
                .map(|g| (*g, Performance::default()))
                .collect(),
        }
    }
}

impl D31Split {
    /// Counts one treatment period.
    pub fn add(&mut self, counted: &CountedPeriod<'_>) {
        self.add_share(counted.group, counted.modality, 1.0, counted.breached);
    }

    /// Counts `share` treatment periods of one group and modality group.
    pub fn add_share(
        &mut self,
        group: TreatmentGroup,
        modality: ModalityGroup,
        share: f64,
        breached: bool,
    ) {
        let group = self
            .by_treatment
            .entry(group)
            .or_insert_with(GroupPerformance::empty);
        group.performance.add(share, breached);
        group
            .by_modality
            .entry(modality)
            .or_default()
            .add(share, breached);
        self.by_modality
            .entry(modality)
            .or_default()
            .add(share, breached);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn treatment_groups_follow_route_and_period() {
        use TreatmentGroup::*;
        let cases = [
            (
                Route::UrgentSuspectedCancer,
                TreatmentKind::First,
                FirstDefinitive,
            ),
            (
                Route::BreastSymptomatic,
                TreatmentKind::First,
                FirstDefinitive,
            ),
            (Route::Screening, TreatmentKind::First, FirstDefinitive),
            (Route::Other, TreatmentKind::First, FirstDefinitive),
            (
                Route::UrgentSuspectedCancer,
                TreatmentKind::Subsequent,
                Subsequent,
            ),
            (Route::Other, TreatmentKind::Subsequent, Subsequent),
            (Route::Recurrence, TreatmentKind::First, Subsequent),
            (Route::Recurrence, TreatmentKind::Subsequent, Subsequent),
        ];
        for (route, kind, group) in cases {
            assert_eq!(TreatmentGroup::of(route, kind), group, "{route} {kind}");
        }
    }

    #[test]
    fn every_modality_has_one_group() {
        let cases = [
            (Modality::Surgery, "surgery"),
            (Modality::AnticancerDrug, "anticancer_drug"),
            (Modality::Radiotherapy, "radiotherapy"),
            (Modality::Chemoradiotherapy, "radiotherapy"),
            (Modality::ActiveMonitoring, "other"),
            (Modality::PalliativeCare, "other"),
            (Modality::Other, "other"),
        ];
        assert_eq!(cases.len(), Modality::ALL.len(), "every modality is listed");
        for (modality, group) in cases {
            assert_eq!(ModalityGroup::of(modality).as_str(), group, "{modality}");
        }
    }
}
