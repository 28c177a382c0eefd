//! The PTL index's entries: each PTL row's filter and sort keys, small and
//! inline, so a PTL query scans a dense array instead of visiting every
//! pathway's state. A leaf shared by the projection (which keeps the index)
//! and the views (which filter and sort it).

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Datelike, NaiveDate};
use openptl_rules::{PtlRow, Rag, Route, TumourSite, WaitBand};

use crate::pathway_key::PathwayKey;

/// An ODS code (at most 8 ASCII characters) as a number, for fast filters.
pub(crate) fn pack_trust(code: &str) -> u64 {
    let mut bytes = [0u8; 8];
    for (b, c) in bytes.iter_mut().zip(code.bytes()) {
        *b = c;
    }
    u64::from_le_bytes(bytes)
}

pub(crate) fn day_number(date: NaiveDate) -> i32 {
    date.num_days_from_ce()
}

/// The filter and sort keys of a PTL row, small and inline, so a PTL query
/// scans a dense array instead of visiting every pathway's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PtlKeys {
    pub(crate) trust: u64,
    pub(crate) tumour_site: TumourSite,
    pub(crate) route: Route,
    pub(crate) band: Option<WaitBand>,
    pub(crate) rag: Rag,
    pub(crate) escalated: bool,
    pub(crate) has_next_action: bool,
    pub(crate) next_action_overdue: bool,
    pub(crate) milestone_overdue: bool,
    /// A subsequent treatment period runs (SPEC 2.12).
    pub(crate) waiting_subsequent: bool,
    /// A lower GI pathway whose latest FIT is below 10 (issue 25).
    pub(crate) fit_below_10: bool,
    pub(crate) days_waited: i64,
    pub(crate) next_breach: Option<i32>,
    pub(crate) referred: i32,
}

impl PtlKeys {
    /// A row's keys for tests: at trust RXH, lower GI, 10 days waited,
    /// nothing else set.
    #[cfg(test)]
    pub(crate) fn sample() -> PtlKeys {
        PtlKeys {
            trust: pack_trust("RXH"),
            tumour_site: TumourSite::LowerGi,
            route: Route::UrgentSuspectedCancer,
            band: None,
            rag: Rag::Green,
            escalated: false,
            has_next_action: false,
            next_action_overdue: false,
            milestone_overdue: false,
            waiting_subsequent: false,
            fit_below_10: false,
            days_waited: 10,
            next_breach: None,
            referred: 0,
        }
    }

    /// The band of the 62-day wait, while that clock runs.
    pub fn band(&self) -> Option<WaitBand> {
        self.band
    }

    /// The trust's ODS code.
    pub fn trust(&self) -> String {
        let bytes = self.trust.to_le_bytes();
        bytes
            .iter()
            .take_while(|b| **b != 0)
            .map(|b| *b as char)
            .collect()
    }

    pub fn of(row: &PtlRow) -> PtlKeys {
        PtlKeys {
            trust: pack_trust(&row.trust),
            tumour_site: row.tumour_site,
            route: row.route,
            band: row.band,
            rag: row.rag,
            escalated: row.escalated,
            has_next_action: row.next_action.is_some(),
            next_action_overdue: row.next_action_overdue,
            milestone_overdue: row.milestone_overdue,
            waiting_subsequent: row.subsequent.is_some(),
            fit_below_10: openptl_rules::fit::on_fit_below_10_worklist(
                row.tumour_site,
                row.fit_band,
            ),
            days_waited: row.days_waited(),
            next_breach: row.next_breach_date.map(day_number),
            referred: day_number(row.referred_on),
        }
    }
}

/// One row of the projection's PTL index: the keys to filter and sort on,
/// inline; the row itself is made from the pathway's state for the rows of
/// a page only.
#[derive(Debug, Clone)]
pub struct PtlIndexEntry {
    pub keys: PtlKeys,
    pub id: PathwayKey,
    pub version: u64,
    /// The row's breach-risk keys, filled by the views when first asked
    /// for under a day's model (decision 154); a new entry (a changed
    /// pathway) starts empty.
    pub(crate) risk: RiskCell,
}

impl PtlIndexEntry {
    pub fn new(keys: PtlKeys, id: PathwayKey, version: u64) -> PtlIndexEntry {
        PtlIndexEntry {
            keys,
            id,
            version,
            risk: RiskCell::default(),
        }
    }
}

/// A PTL row's breach risk as filter and sort keys, in tenths of a percent
/// ([`openptl_rules::forecast::permille`]): the riskiest running clock's,
/// and the riskiest not yet past its target's (the likely-to-breach
/// worklist). `None`: no such clock runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RiskKeys {
    pub(crate) highest: Option<u16>,
    pub(crate) ahead: Option<u16>,
}

impl RiskKeys {
    /// The keys of a row's risk (`None`: no running clock).
    pub fn of(risk: Option<&openptl_rules::forecast::RowRisk>) -> RiskKeys {
        use openptl_rules::forecast::permille;
        RiskKeys {
            highest: risk.map(|r| permille(r.probability)),
            ahead: risk.and_then(|r| r.ahead).map(permille),
        }
    }
}

/// A [`RiskKeys`] stamped with the generation (a day and its model) it was
/// computed under, in one atomic word, so a view may fill it under the
/// projection's read lock: every view computing it for a generation
/// computes the same value from the same state, so a race only repeats
/// work. Generation 0 is "never computed".
#[derive(Debug, Default)]
pub(crate) struct RiskCell(AtomicU64);

const NO_RISK: u64 = 0xFFFF;

impl RiskCell {
    /// The keys, if computed under `generation`.
    pub(crate) fn get(&self, generation: u32) -> Option<RiskKeys> {
        let word = self.0.load(Ordering::Relaxed);
        if (word >> 32) as u32 != generation || generation == 0 {
            return None;
        }
        let part = |bits: u64| (bits != NO_RISK).then_some(bits as u16);
        Some(RiskKeys {
            highest: part((word >> 16) & 0xFFFF),
            ahead: part(word & 0xFFFF),
        })
    }

    pub(crate) fn set(&self, generation: u32, keys: RiskKeys) {
        let part = |p: Option<u16>| p.map_or(NO_RISK, u64::from);
        let word = (u64::from(generation) << 32) | (part(keys.highest) << 16) | part(keys.ahead);
        self.0.store(word, Ordering::Relaxed);
    }
}

impl Clone for RiskCell {
    fn clone(&self) -> RiskCell {
        RiskCell(AtomicU64::new(self.0.load(Ordering::Relaxed)))
    }
}
