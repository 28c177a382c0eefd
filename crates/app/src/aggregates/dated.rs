//! The standards and FIT cells (`openptl_rules::tally`,
//! `openptl_rules::fit::contribution`): what every pathway's state adds to
//! the standards view of each standard and month and to the FIT report of
//! each referral month.
//!
//! A stop, an exclusion, a treatment, a FIT test and its result are each
//! dated, so what a pathway adds here is the same as of any date its
//! events are settled by (decision 158). Today's aggregates keep these
//! cells as of today; the projection keeps them as of a few past dates as
//! well, once a view of one was asked for ([`super::kept_days`], decision
//! 202). Both answer through the same functions here.

use foldhash::HashMap;

use openptl_rules::fit::{self, FitCount, FitFigures, FitReport};
use openptl_rules::report::StandardsReport;
use openptl_rules::tally::{self, StandardsCount, StandardsKey, Tally};
use openptl_rules::{ClockKind, OdsCode, PathwayState, Period, RulesConfig, TumourSite};

/// What one pathway's state adds to the standards and FIT cells.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct DatedContribution {
    standards: Vec<(StandardsKey, f64)>,
    fit: Option<((Period, OdsCode), FitFigures)>,
}

impl DatedContribution {
    /// What `state` adds (as of its own date).
    pub(crate) fn of(state: &PathwayState, config: &RulesConfig) -> DatedContribution {
        let mut standards = Vec::new();
        tally::standards_contributions(state, &mut |key, share| standards.push((key, share)));
        DatedContribution {
            standards,
            fit: fit::contribution(state, config),
        }
    }
}

/// The standards cells by standard and month, and the FIT cells by
/// referral month and trust at referral.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct DatedCells {
    standards: HashMap<(ClockKind, Period), HashMap<StandardsKey, Tally>>,
    fit: HashMap<(Period, OdsCode), FitFigures>,
}

impl DatedCells {
    /// Adds (`sign` 1) or takes away (`sign` -1) a pathway's contribution;
    /// cells left counting nothing are dropped, so equal states give equal
    /// cells whatever the path to them.
    pub(crate) fn apply(&mut self, c: &DatedContribution, sign: i64) {
        for (key, share) in &c.standards {
            self.add_standard(key, *share, sign);
        }
        if let Some((key, figures)) = &c.fit {
            self.add_fit(key, figures, sign);
        }
    }

    /// Adds (`sign` 1) or takes away (`sign` -1) what `state` adds (as
    /// [`DatedContribution::of`] says, without making one).
    pub(crate) fn add_state(&mut self, state: &PathwayState, config: &RulesConfig, sign: i64) {
        tally::standards_contributions(state, &mut |key, share| {
            self.add_standard(&key, share, sign)
        });
        if let Some((key, figures)) = fit::contribution(state, config) {
            self.add_fit(&key, &figures, sign);
        }
    }

    fn add_standard(&mut self, key: &StandardsKey, share: f64, sign: i64) {
        let by_cell = self.standards.entry((key.standard, key.month)).or_default();
        let cell = by_cell.entry(*key).or_default();
        cell.add(share, sign);
        if cell.is_empty() {
            by_cell.remove(key);
            if by_cell.is_empty() {
                self.standards.remove(&(key.standard, key.month));
            }
        }
    }

    fn add_fit(&mut self, key: &(Period, OdsCode), figures: &FitFigures, sign: i64) {
        let cell = self.fit.entry(*key).or_insert_with(FitFigures::empty);
        cell.combine(figures, sign);
        if cell.referrals == 0 {
            self.fit.remove(key);
        }
    }

    /// Adds every cell of `other` (partial sums built on several threads).
    pub(crate) fn merge(&mut self, other: DatedCells) {
        for ((standard, month), cells) in other.standards {
            let by_cell = self.standards.entry((standard, month)).or_default();
            for (key, tally) in cells {
                by_cell.entry(key).or_default().merge(&tally);
            }
        }
        for (key, figures) in other.fit {
            self.fit
                .entry(key)
                .or_insert_with(FitFigures::empty)
                .combine(&figures, 1);
        }
        // Merged partial sums may cancel out (a pathway taken away in one
        // part, added in another): equal cells whatever the path.
        self.standards.retain(|_, cells| {
            cells.retain(|_, tally| !tally.is_empty());
            !cells.is_empty()
        });
        self.fit.retain(|_, figures| figures.referrals != 0);
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

    /// The FIT report of `period` (SPEC 2.6) among the trusts at referral
    /// `allows` admits.
    pub(crate) fn fit(
        &self,
        period: Period,
        allows: &dyn Fn(&str) -> bool,
        config: &RulesConfig,
    ) -> FitReport {
        fit::report_from_cells(&self.fit, period, allows, config)
    }

    /// The cells of `standard` in `period`, to count more into.
    pub(crate) fn standards_count(&self, standard: ClockKind, period: Period) -> StandardsCount {
        let cells = self.standards.get(&(standard, period));
        let cells = cells.into_iter().flatten().map(|(k, t)| (*k, *t));
        StandardsCount::from_cells(standard, period, cells)
    }

    /// The FIT cells of `period`, to count more into.
    pub(crate) fn fit_count(&self, period: Period) -> FitCount {
        let cells = self
            .fit
            .iter()
            .filter(|((month, _), _)| *month == period)
            .map(|(key, figures)| (*key, figures.clone()));
        FitCount::from_cells(period, cells)
    }

    /// How many cells it keeps.
    pub(crate) fn len(&self) -> usize {
        self.standards.values().map(HashMap::len).sum::<usize>() + self.fit.len()
    }

    /// About how many bytes it holds: its tables' slots (a FIT cell's
    /// band counts besides, a few hundred bytes each).
    pub(crate) fn bytes(&self) -> usize {
        use std::mem::size_of;
        let table = |capacity: usize, entry: usize| capacity * (entry + 1);
        let standards = self
            .standards
            .values()
            .map(|cells| table(cells.capacity(), size_of::<(StandardsKey, Tally)>()))
            .sum::<usize>();
        let months = size_of::<((ClockKind, Period), HashMap<StandardsKey, Tally>)>();
        let fit = size_of::<((Period, OdsCode), FitFigures)>();
        standards + table(self.standards.capacity(), months) + table(self.fit.capacity(), fit)
    }
}
