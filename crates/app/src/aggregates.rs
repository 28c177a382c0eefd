//! Today's aggregate views kept current (issue 22): the cells of the
//! standards and milestone views (`openptl_rules::tally`) summed over every
//! pathway's state as of the projection's `today`. The projection keeps
//! them as pathways change (each re-evaluated pathway takes its old state's
//! contributions away and adds its new state's) and builds them afresh
//! from every state after a bulk change (start, restore, a new day); a view
//! of today then reads cells (months × trusts × sites × outcomes), never
//! the pathways behind them.
//!
//! Everything here is a pure function of the states: [`Aggregates::of`]
//! over every state is the oracle the incremental sums are tested against.

use foldhash::HashMap;

use openptl_rules::report::{MilestonesReport, StandardsReport};
use openptl_rules::tally::{self, MilestonesKey, MilestonesTally, StandardsKey, Tally};
use openptl_rules::{ClockKind, PathwayState, Period, RulesConfig, TumourSite};

/// What one pathway's state adds to the aggregates.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Contribution {
    standards: Vec<(StandardsKey, f64)>,
    milestones: Option<(MilestonesKey, MilestonesTally)>,
}

impl Contribution {
    pub(crate) fn of(state: &PathwayState, config: &RulesConfig) -> Contribution {
        let mut standards = Vec::new();
        tally::standards_contributions(state, &mut |key, share| standards.push((key, share)));
        Contribution {
            standards,
            milestones: tally::milestones_contribution(state, config),
        }
    }
}

/// The cells of today's standards and milestone views.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Aggregates {
    /// By standard and month, then by cell.
    standards: HashMap<(ClockKind, Period), HashMap<StandardsKey, Tally>>,
    milestones: HashMap<MilestonesKey, MilestonesTally>,
}

impl Aggregates {
    /// The aggregates of `states`, from scratch (the oracle of the tests).
    #[cfg(test)]
    pub(crate) fn of<'a>(
        states: impl IntoIterator<Item = &'a PathwayState>,
        config: &RulesConfig,
    ) -> Aggregates {
        let mut out = Aggregates::default();
        for state in states {
            out.apply(&Contribution::of(state, config), 1);
        }
        out
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) one pathway's
    /// contribution; cells left counting nothing are dropped, so equal
    /// states give equal aggregates whatever the path to them.
    pub(crate) fn apply(&mut self, c: &Contribution, sign: i64) {
        for (key, share) in &c.standards {
            let by_cell = self.standards.entry((key.standard, key.month)).or_default();
            let cell = by_cell.entry(*key).or_default();
            cell.add(*share, sign);
            if cell.is_empty() {
                by_cell.remove(key);
                if by_cell.is_empty() {
                    self.standards.remove(&(key.standard, key.month));
                }
            }
        }
        if let Some((key, tally)) = &c.milestones {
            let cell = self.milestones.entry(*key).or_default();
            cell.add(tally, sign);
            if cell.is_empty() {
                self.milestones.remove(key);
            }
        }
    }

    /// Adds every cell of `other` (partial sums built on several threads).
    pub(crate) fn merge(&mut self, other: Aggregates) {
        for ((standard, month), cells) in other.standards {
            let by_cell = self.standards.entry((standard, month)).or_default();
            for (key, tally) in cells {
                let cell = by_cell.entry(key).or_default();
                cell.count += tally.count;
                cell.share += tally.share;
            }
        }
        for (key, tally) in other.milestones {
            self.milestones.entry(key).or_default().add(&tally, 1);
        }
    }

    /// The standards view of `standard` in `period` (SPEC 4.4).
    pub(crate) fn standards(
        &self,
        standard: ClockKind,
        period: Period,
        tumour_site: Option<TumourSite>,
        trust_visible: &dyn Fn(&str) -> bool,
        config: &RulesConfig,
    ) -> StandardsReport {
        let cells = self
            .standards
            .get(&(standard, period))
            .into_iter()
            .flatten()
            .filter(|(key, _)| tumour_site.is_none_or(|t| key.site == t));
        tally::standards_from_cells(cells, standard, period, trust_visible, config)
    }

    /// The milestone view of pathways referred in `period` (all when none),
    /// at the trusts `trust_visible` allows (the current trust's).
    pub(crate) fn milestones(
        &self,
        period: Option<Period>,
        tumour_site: Option<TumourSite>,
        trust_visible: &dyn Fn(&str) -> bool,
        config: &RulesConfig,
    ) -> MilestonesReport {
        let cells = self.milestones.iter().filter(|(key, _)| {
            period.is_none_or(|p| key.referred == p)
                && tumour_site.is_none_or(|t| key.site == t)
                && trust_visible(key.trust.as_str())
        });
        tally::milestones_from_cells(cells, period, config)
    }

    /// How many cells are kept (for the memory figures).
    pub(crate) fn cells(&self) -> usize {
        self.standards.values().map(HashMap::len).sum::<usize>() + self.milestones.len()
    }
}

#[cfg(test)]
mod tests;
