//! The PTL gauges of `/metrics` as cells (issue 22): open pathways by
//! trust, tumour site and wait band; clocks due to breach within 7 days and
//! clocks open and breached by trust, site and clock; overdue milestones by
//! trust and site. A pathway on today's PTL adds one to a few cells; the
//! projection keeps them with the other aggregates, so a scrape reads cells
//! rather than unpacking every open pathway.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use openptl_rules::{ClockStatus, MilestoneStatus, OdsCode, PathwayState, TreatmentKind};
use openptl_rules::{TumourSite, WaitBand};

/// The `clock` label of subsequent treatment periods (SPEC 2.12): clocks of
/// their own, a bounded value, never the plan's name.
pub(crate) const SUBSEQUENT_CLOCK: &str = "d31_subsequent";

/// One series of the PTL gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum GaugeKey {
    Open {
        trust: OdsCode,
        site: TumourSite,
        band: Option<WaitBand>,
    },
    DueToBreach {
        trust: OdsCode,
        site: TumourSite,
        clock: &'static str,
    },
    OpenBreached {
        trust: OdsCode,
        site: TumourSite,
        clock: &'static str,
    },
    OverdueMilestones {
        trust: OdsCode,
        site: TumourSite,
    },
}

/// What a pathway on the PTL (its state as of `today`, its wait band)
/// adds to the gauges.
pub(crate) fn contributions(
    state: &PathwayState,
    band: Option<WaitBand>,
    today: NaiveDate,
    out: &mut Vec<(GaugeKey, i64)>,
) {
    let (trust, site) = (state.trust, state.tumour_site);
    out.push((GaugeKey::Open { trust, site, band }, 1));
    let subsequent = state
        .treatment_periods
        .iter()
        .filter(|p| p.treatment == TreatmentKind::Subsequent)
        .map(|p| (SUBSEQUENT_CLOCK, &p.clock));
    let clocks = state.clocks.iter().map(|(k, c)| (k.as_str(), c));
    for (clock, c) in clocks.chain(subsequent) {
        match c.status {
            ClockStatus::OpenBreached => {
                out.push((GaugeKey::OpenBreached { trust, site, clock }, 1));
            }
            ClockStatus::Open => {
                let soon = c.breach_date().is_some_and(|d| (d - today).num_days() <= 7);
                if soon {
                    out.push((GaugeKey::DueToBreach { trust, site, clock }, 1));
                }
            }
            _ => {}
        }
    }
    let overdue = state
        .milestones
        .iter()
        .filter(|m| m.status == MilestoneStatus::Overdue)
        .count();
    if overdue > 0 {
        out.push((GaugeKey::OverdueMilestones { trust, site }, overdue as i64));
    }
}

/// The PTL gauges' series (label values → value).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PtlGauges {
    pub(crate) open: BTreeMap<[String; 3], f64>,
    pub(crate) due: BTreeMap<[String; 3], f64>,
    pub(crate) breached: BTreeMap<[String; 3], f64>,
    pub(crate) overdue: BTreeMap<[String; 2], f64>,
}

impl PtlGauges {
    /// The series of `cells` (those counting nothing are left out).
    pub(crate) fn of<'a>(cells: impl IntoIterator<Item = (&'a GaugeKey, &'a i64)>) -> PtlGauges {
        let mut out = PtlGauges::default();
        for (key, n) in cells {
            if *n == 0 {
                continue;
            }
            let n = *n as f64;
            let (trust, site) = match key {
                GaugeKey::Open { trust, site, .. }
                | GaugeKey::DueToBreach { trust, site, .. }
                | GaugeKey::OpenBreached { trust, site, .. }
                | GaugeKey::OverdueMilestones { trust, site } => {
                    (trust.as_str().to_string(), site.as_str().to_string())
                }
            };
            match key {
                GaugeKey::Open { band, .. } => {
                    let band = band.map_or("none", |b| b.as_str()).to_string();
                    *out.open.entry([trust, site, band]).or_default() += n;
                }
                GaugeKey::DueToBreach { clock, .. } => {
                    *out.due.entry([trust, site, clock.to_string()]).or_default() += n;
                }
                GaugeKey::OpenBreached { clock, .. } => {
                    *out.breached
                        .entry([trust, site, clock.to_string()])
                        .or_default() += n;
                }
                GaugeKey::OverdueMilestones { .. } => {
                    *out.overdue.entry([trust, site]).or_default() += n;
                }
            }
        }
        out
    }
}
