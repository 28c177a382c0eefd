//! A PTL row's breach risk (issue 24, decision 154): the riskiest of its
//! pathway's running clocks, which the PTL shows, sorts and filters by,
//! and the riskiest of those not yet past their target, which decides the
//! "likely to breach" worklist. A row with no running clock has no risk
//! (`None`), never 0.

use std::sync::Arc;

use super::hazard::Model;
use super::observe::{named_observations, Outcome};
use crate::codes::ClockKind;
use crate::pathway::PathwayState;

/// A row's risk: which clock, and how likely it is to breach.
#[derive(Debug, Clone, PartialEq)]
pub struct RowRisk {
    /// The riskiest running clock's chance of breaching its target, 0 to 1
    /// (1 for a clock already past it).
    pub probability: f64,
    pub clock: ClockKind,
    /// Its treatment period's plan id (a subsequent 31-day period only).
    pub plan_id: Option<Arc<str>>,
    /// The riskiest running clock not yet past its target, if any: the
    /// breach that may still be prevented.
    pub ahead: Option<f64>,
}

/// The breach risk of a state's PTL row under `model`; `None` when no clock
/// of it runs. Among equally risky clocks the first in the order FDS,
/// 62-day, treatment periods names the row.
pub fn row_risk(state: &PathwayState, model: &Model) -> Option<RowRisk> {
    let mut risk: Option<RowRisk> = None;
    let mut ahead: Option<f64> = None;
    for (plan_id, o) in named_observations(state).filter(|(_, o)| o.outcome == Outcome::Running) {
        let p = model.probability(&o);
        if !o.past_target() {
            ahead = Some(ahead.map_or(p, |a| a.max(p)));
        }
        if risk.as_ref().is_none_or(|r| p > r.probability) {
            risk = Some(RowRisk {
                probability: p,
                clock: o.kind,
                plan_id: plan_id.cloned(),
                ahead: None,
            });
        }
    }
    risk.map(|r| RowRisk { ahead, ..r })
}

/// A probability as tenths of a percent (0 to 1000), the precision the PTL
/// shows, sorts and filters by.
pub fn permille(probability: f64) -> u16 {
    (probability.clamp(0.0, 1.0) * 1000.0).round() as u16
}
