//! The milestone cells (`openptl_rules::tally::milestones_contribution`):
//! what every pathway's state adds to the milestone view, by referral
//! month, trust and tumour site. Today's aggregates keep them (for every
//! pathway, and for those with every milestone decided apart, which a
//! past view starts from: decision 158); the projection keeps them as of
//! a few past dates as well, once a milestone view of one was asked for
//! ([`super::kept_days`], decision 202). All answer through [`Self::report`].

use foldhash::HashMap;

use openptl_rules::report::MilestonesReport;
use openptl_rules::tally::{self, MilestonesKey, MilestonesTally};
use openptl_rules::{PathwayState, Period, RulesConfig, TumourSite};

/// The milestone cells of some pathways.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct MilestoneCells {
    cells: HashMap<MilestonesKey, MilestonesTally>,
}

impl MilestoneCells {
    /// Adds (`sign` 1) or takes away (`sign` -1) a pathway's contribution;
    /// cells left counting nothing are dropped, so equal states give equal
    /// cells whatever the path to them.
    pub(crate) fn apply(&mut self, c: &Option<(MilestonesKey, MilestonesTally)>, sign: i64) {
        if let Some((key, tally)) = c {
            let cell = self.cells.entry(*key).or_default();
            cell.add(tally, sign);
            if cell.is_empty() {
                self.cells.remove(key);
            }
        }
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) what `state` adds.
    pub(crate) fn add_state(&mut self, state: &PathwayState, config: &RulesConfig, sign: i64) {
        self.apply(&tally::milestones_contribution(state, config), sign);
    }

    /// Adds every cell of `other` (partial sums built on several threads).
    pub(crate) fn merge(&mut self, other: MilestoneCells) {
        for (key, tally) in other.cells {
            self.cells.entry(key).or_default().add(&tally, 1);
        }
        // Merged partial sums may cancel out (a pathway taken away in one
        // part, added in another): equal cells whatever the path.
        self.cells.retain(|_, tally| !tally.is_empty());
    }

    /// The milestone view of pathways referred in `period` (all when none),
    /// at the trusts `trust_visible` allows (the current trust's).
    pub(crate) fn report(
        &self,
        period: Option<Period>,
        tumour_site: Option<TumourSite>,
        trust_visible: &dyn Fn(&str) -> bool,
        config: &RulesConfig,
    ) -> MilestonesReport {
        let cells = self.cells.iter().filter(|(key, _)| {
            period.is_none_or(|p| key.referred == p)
                && tumour_site.is_none_or(|t| key.site == t)
                && trust_visible(key.trust.as_str())
        });
        tally::milestones_from_cells(cells, period, config)
    }

    /// How many cells it keeps.
    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    /// About how many bytes it holds: its table's slots and each cell's
    /// statuses.
    pub(crate) fn bytes(&self) -> usize {
        let slot = std::mem::size_of::<(MilestonesKey, MilestonesTally)>() + 1;
        let statuses: usize = self
            .cells
            .values()
            .map(|t| std::mem::size_of_val(t.statuses.as_slice()))
            .sum();
        self.cells.capacity() * slot + statuses
    }
}
