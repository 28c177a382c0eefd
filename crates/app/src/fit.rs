//! The FIT view (issue 25) over the projection: the month's FIT report for
//! today from the cells the projection keeps (issue 22), for any other `as_of`/`known_at` by
//! evaluating every pathway afresh (as every aggregate view does), scoped
//! to the caller's trusts; and the FIT gauges of `/metrics` (this month,
//! by trust and measure, nothing else).

use std::collections::BTreeMap;

use openptl_rules::fit::{FitCount, FitFigures, FitReport};
use openptl_rules::{DiagnosticTest, PathwayState, Period};
use prometheus::{GaugeVec, Opts, Registry};

use crate::access::Principal;
use crate::aggregates::dated::DatedCells;
use crate::views::{TrustFilter, ViewAt};
use crate::{App, AppError};

impl App {
    /// The FIT report of the lower GI urgent referrals received in `period`
    /// (the month of `as_of` when none), among the trusts asked for and
    /// the caller may see.
    pub async fn fit(
        &self,
        at: &ViewAt,
        period: Option<Period>,
        trusts: &TrustFilter,
        principal: &Principal,
    ) -> Result<(FitReport, u64), AppError> {
        let (trusts, as_of) = self.view_scope(at, trusts, principal).await;
        let period = period.unwrap_or_else(|| Period::of(as_of));
        let config = self.config.clone();
        let (visible, rules) = (trusts.clone(), config.clone());
        let report = move |cells: &DatedCells| cells.fit(period, &|t| visible.allows(t), &rules);
        let (of_today, report) = (report.clone(), report);
        let today = self.answer_from_aggregates(as_of, at.known_at, move |aggregates| {
            of_today(aggregates.dated())
        });
        if let Some(done) = today.await? {
            return Ok(done);
        }
        if let Some(done) = self
            .answer_from_kept_day(as_of, at.known_at, report)
            .await?
        {
            return Ok(done);
        }
        let (rules, away_rules) = (config.clone(), config.clone());
        let (count, position) = self
            .fold_states(
                self.past_split(as_of, at.known_at, crate::past::Shown::period(period))
                    .await?,
                move || FitCount::new(period),
                move |count, _, state| count.add(state, &rules),
                FitCount::merge,
                Some((
                    crate::past::Counted::Fit(period),
                    Box::new(move |count: &mut FitCount, state: &PathwayState| {
                        count.take_away(state, &away_rules)
                    }),
                )),
            )
            .await?;
        Ok((count.report(&|t| trusts.allows(t), &config), position))
    }
}

/// The FIT gauges: bounded labels only (`trust`, `measure`).
pub(crate) struct FitGauges {
    percent: GaugeVec,
    pathways: GaugeVec,
    target: GaugeVec,
}

impl FitGauges {
    pub(crate) fn register(registry: &Registry) -> FitGauges {
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let gauge =
                GaugeVec::new(Opts::new(name, help), labels).expect("metric definitions are valid");
            registry
                .register(Box::new(gauge.clone()))
                .expect("each metric is registered once");
            gauge
        };
        FitGauges {
            percent: gauge(
                "openptl_fit_percent",
                "This month's lower GI urgent referrals, by trust at referral: `with_fit` (a FIT result on or before referral), `indicator` (within the primary-care indicator's days), `colonoscopies_without_fit` (of colonoscopies done on them, none with a FIT result on the day).",
                &["trust", "measure"],
            ),
            pathways: gauge(
                "openptl_fit_pathways",
                "This month's lower GI urgent referrals, by trust at referral: `referrals`, `with_fit`, `colonoscopies`, `colonoscopies_without_fit`, `colonoscopies_fit_below_10`.",
                &["trust", "measure"],
            ),
            target: gauge(
                "openptl_fit_target_percent",
                "The FIT targets from the rules file: `with_fit` (at least), `colonoscopies_without_fit` (fewer than).",
                &["measure"],
            ),
        }
    }

    /// Sets every series from this month's report (series of trusts that
    /// emptied disappear).
    pub(crate) fn set(&self, report: &FitReport) {
        self.percent.reset();
        self.pathways.reset();
        self.target
            .with_label_values(&["with_fit"])
            .set(report.targets.with_fit_percent);
        self.target
            .with_label_values(&["colonoscopies_without_fit"])
            .set(report.targets.colonoscopies_without_fit_percent);
        for line in &report.by_trust {
            for (measure, value) in measures(&line.figures).percent {
                if let Some(value) = value {
                    self.percent
                        .with_label_values(&[&line.trust, measure])
                        .set(value);
                }
            }
            for (measure, value) in measures(&line.figures).pathways {
                self.pathways
                    .with_label_values(&[&line.trust, measure])
                    .set(value as f64);
            }
        }
    }
}

struct Measures {
    percent: BTreeMap<&'static str, Option<f64>>,
    pathways: BTreeMap<&'static str, u64>,
}

fn measures(f: &FitFigures) -> Measures {
    let colonoscopy = f
        .tests
        .iter()
        .find(|t| t.test == DiagnosticTest::Colonoscopy);
    let mut percent = BTreeMap::from([
        ("with_fit", f.with_fit_percent),
        ("indicator", f.indicator_percent),
    ]);
    let mut pathways = BTreeMap::from([("referrals", f.referrals), ("with_fit", f.with_fit)]);
    if let Some(c) = colonoscopy {
        percent.insert("colonoscopies_without_fit", c.without_fit_percent);
        pathways.insert("colonoscopies", c.pathways);
        pathways.insert("colonoscopies_without_fit", c.without_fit);
        pathways.insert("colonoscopies_fit_below_10", c.on_fit_below_10);
    }
    Measures { percent, pathways }
}
