//! The month-end projection of a standard: the clocks already stopped in
//! the month (as `report::standards` counts them) plus the expected stops,
//! and their outcomes, of the clocks still running and of those expected
//! to start before the month ends. The point figure is the ratio of
//! expectations; the 80% interval is the 10th to 90th percentile of
//! simulated months (each running clock stopping within target, breaching
//! or not stopping in the month by its chances; new clocks arriving at the
//! recent rate).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use super::hazard::Model;
use super::observe::{Observation, Outcome};
use crate::codes::*;
use crate::report::{Performance, Period, StandardsReport, Thresholds};
use crate::rng::SplitMix64;

/// Days of recent starts that set the rate of new clocks.
const RECENT_DAYS: i64 = 28;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonthEndOptions {
    /// Simulated months for the interval.
    pub simulations: usize,
    pub seed: u64,
    /// Count the clocks expected to start (and stop) before the month ends.
    pub new_starts: bool,
}

impl Default for MonthEndOptions {
    fn default() -> Self {
        MonthEndOptions {
            simulations: 1000,
            seed: 24,
            new_starts: true,
        }
    }
}

/// One line of a projection (the whole, a trust or a tumour site).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ProjectedFigure {
    /// Clocks already stopped in the month (shares after transfers).
    pub stopped: f64,
    pub stopped_within_target: f64,
    pub percent_so_far: Option<f64>,
    /// Running clocks that may still stop in the month.
    pub running: u64,
    /// Further stops expected in the month (running and new clocks).
    pub expected_stops: f64,
    pub expected_breaches: f64,
    /// The projected month-end percentage within target.
    pub percent: Option<f64>,
    /// The 80% interval of the projected percentage.
    pub low: Option<f64>,
    pub high: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrustProjection {
    pub trust: String,
    #[serde(flatten)]
    pub figure: ProjectedFigure,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteProjection {
    pub tumour_site: TumourSite,
    #[serde(flatten)]
    pub figure: ProjectedFigure,
}

/// A standard's projected month-end figures (issue 24).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthEndProjection {
    pub standard: ClockKind,
    pub period: Period,
    #[serde(with = "crate::date")]
    pub as_of: NaiveDate,
    pub thresholds: Thresholds,
    #[serde(flatten)]
    pub overall: ProjectedFigure,
    pub by_trust: Vec<TrustProjection>,
    pub by_tumour_site: Vec<SiteProjection>,
}

/// The draws of a projection, fixed so that it is repeatable.
struct Rng(SplitMix64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0.unit()
    }

    /// A Poisson draw (Knuth's method; a normal approximation for large means).
    fn poisson(&mut self, mean: f64) -> f64 {
        // Not a positive number (a NaN chance included): no arrivals. A
        // NaN mean would otherwise never meet its limit below.
        if !(mean > 0.0 && mean.is_finite()) {
            return 0.0;
        }
        if mean > 30.0 {
            let (u1, u2) = (self.unit().max(f64::MIN_POSITIVE), self.unit());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            return (mean + z * mean.sqrt()).round().max(0.0);
        }
        let limit = (-mean).exp();
        let (mut k, mut p) = (0.0, 1.0);
        loop {
            p *= self.unit();
            if p <= limit {
                return k;
            }
            k += 1.0;
        }
    }
}

/// The lines a clock counts in: the whole (0), its trust, its site.
struct Lines {
    trusts: BTreeMap<String, usize>,
    sites: BTreeMap<TumourSite, usize>,
    next: usize,
}

impl Lines {
    fn trust(&mut self, trust: &str) -> usize {
        if let Some(&i) = self.trusts.get(trust) {
            return i;
        }
        self.next += 1;
        self.trusts.insert(trust.to_string(), self.next - 1);
        self.next - 1
    }

    fn site(&mut self, site: TumourSite) -> usize {
        let next = &mut self.next;
        *self.sites.entry(site).or_insert_with(|| {
            *next += 1;
            *next - 1
        })
    }

    fn of(&mut self, trust: &str, site: TumourSite) -> [usize; 3] {
        [0, self.trust(trust), self.site(site)]
    }
}

/// Chances of a month's outcome: stops within target, stops breached.
#[derive(Clone, Copy, Default)]
struct Chances {
    within: f64,
    breached: f64,
}

/// The chances that a clock running on `as_of` stops in `period`, within
/// target or breached.
fn chances(model: &Model, o: &Observation, as_of: NaiveDate, period: Period) -> Chances {
    let ahead = (period.last_day() - as_of).num_days();
    if ahead < 0 {
        return Chances::default();
    }
    let mut c = Chances::default();
    for (i, p) in model.stop_chances(o, ahead).into_iter().enumerate() {
        let date = as_of + chrono::Days::new(i as u64);
        if date < period.first_day() {
            continue;
        }
        if o.days + i as i64 <= o.target_days {
            c.within += p;
        } else {
            c.breached += p;
        }
    }
    c
}

fn percent(within: f64, total: f64) -> Option<f64> {
    (total > 0.0).then(|| (within / total * 1000.0).round() / 10.0)
}

/// The `q`-quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some((sorted[i] * 10.0).round() / 10.0)
}

/// Projects `known` (the standard's report of the month as of `as_of`) to
/// the month's end. `observations` are every clock as known on `as_of`
/// (the model was learnt from them); `include` says which running clocks
/// count here (the trusts and site asked for).
pub fn project(
    known: &StandardsReport,
    observations: &[Observation],
    model: &Model,
    as_of: NaiveDate,
    include: &dyn Fn(&Observation) -> bool,
    options: MonthEndOptions,
) -> MonthEndProjection {
    let standard = known.standard;
    let period = known.period;
    let mut lines = Lines {
        trusts: BTreeMap::new(),
        sites: BTreeMap::new(),
        next: 1,
    };
    let mut so_far: Vec<Performance> = vec![known.overall.clone()];
    let grow =
        |v: &mut Vec<Performance>, n: usize| v.resize(n.max(v.len()), Performance::default());
    for line in &known.by_trust {
        let i = lines.trust(&line.trust);
        grow(&mut so_far, lines.next);
        so_far[i] = line.performance.clone();
    }
    for line in &known.by_tumour_site {
        let i = lines.site(line.tumour_site);
        grow(&mut so_far, lines.next);
        so_far[i] = line.performance.clone();
    }
    // Running clocks and their chances.
    let mut running: Vec<([usize; 3], Chances)> = Vec::new();
    let mut recent: BTreeMap<(String, TumourSite, Route), (Observation, f64)> = BTreeMap::new();
    let from = as_of - chrono::Days::new(RECENT_DAYS as u64 - 1);
    for o in observations
        .iter()
        .filter(|o| o.kind == standard && include(o))
    {
        if o.start >= from && o.start <= as_of {
            recent
                .entry((o.trust.as_str().to_string(), o.tumour_site, o.route))
                .or_insert_with(|| (o.clone(), 0.0))
                .1 += 1.0 / RECENT_DAYS as f64;
        }
        if o.outcome != Outcome::Running {
            continue;
        }
        let c = chances(model, o, as_of, period);
        if c.within + c.breached <= 0.0 {
            continue;
        }
        running.push((lines.of(o.trust.as_str(), o.tumour_site), c));
    }
    // New clocks: a Poisson number of within-target and breached stops per
    // stratum (thinning the arrivals by their chances on each later day).
    let mut arrivals: Vec<([usize; 3], Chances)> = Vec::new();
    if options.new_starts {
        for ((trust, site, _), (template, rate)) in &recent {
            let mut sum = Chances::default();
            let mut day = as_of + chrono::Days::new(1);
            while day <= period.last_day() {
                let fresh = Observation {
                    start: day,
                    days: 0,
                    outcome: Outcome::Running,
                    mark: None,
                    ..template.clone()
                };
                let c = chances(model, &fresh, day, period);
                sum.within += rate * c.within;
                sum.breached += rate * c.breached;
                day = day + chrono::Days::new(1);
            }
            if sum.within + sum.breached > 0.0 {
                arrivals.push((lines.of(trust, *site), sum));
            }
        }
    }
    let n = lines.next;
    grow(&mut so_far, n);
    let mut expected = vec![Chances::default(); n];
    let mut counts = vec![0u64; n];
    for (idx, c) in running.iter().chain(arrivals.iter()) {
        for &i in idx {
            expected[i].within += c.within;
            expected[i].breached += c.breached;
        }
    }
    for (idx, _) in &running {
        for &i in idx {
            counts[i] += 1;
        }
    }
    // Simulated months.
    let mut rng = Rng(SplitMix64::new(
        options.seed ^ u64::from(period.month) ^ ((period.year as u64) << 8),
    ));
    let mut sims: Vec<Vec<f64>> = vec![Vec::with_capacity(options.simulations); n];
    let mut within = vec![0.0; n];
    let mut breached = vec![0.0; n];
    for _ in 0..options.simulations {
        within.iter_mut().for_each(|w| *w = 0.0);
        breached.iter_mut().for_each(|b| *b = 0.0);
        for (idx, c) in &running {
            let u = rng.unit();
            let (w, b) = if u < c.within {
                (1.0, 0.0)
            } else if u < c.within + c.breached {
                (0.0, 1.0)
            } else {
                continue;
            };
            for &i in idx {
                within[i] += w;
                breached[i] += b;
            }
        }
        for (idx, c) in &arrivals {
            let (w, b) = (rng.poisson(c.within), rng.poisson(c.breached));
            for &i in idx {
                within[i] += w;
                breached[i] += b;
            }
        }
        for i in 0..n {
            let total = so_far[i].total + within[i] + breached[i];
            if total > 0.0 {
                sims[i].push((so_far[i].within_target + within[i]) / total * 100.0);
            }
        }
    }
    let figure = |i: usize| {
        let s = &so_far[i];
        let e = expected[i];
        let sorted = {
            let mut v = sims[i].clone();
            v.sort_by(f64::total_cmp);
            v
        };
        ProjectedFigure {
            stopped: s.total,
            stopped_within_target: s.within_target,
            percent_so_far: s.percent,
            running: counts[i],
            expected_stops: round2(e.within + e.breached),
            expected_breaches: round2(e.breached),
            percent: percent(s.within_target + e.within, s.total + e.within + e.breached),
            low: quantile(&sorted, 0.1),
            high: quantile(&sorted, 0.9),
        }
    };
    MonthEndProjection {
        standard,
        period,
        as_of,
        thresholds: known.thresholds.clone(),
        overall: figure(0),
        by_trust: lines
            .trusts
            .iter()
            .map(|(trust, &i)| TrustProjection {
                trust: trust.clone(),
                figure: figure(i),
            })
            .collect(),
        by_tumour_site: lines
            .sites
            .iter()
            .map(|(&tumour_site, &i)| SiteProjection {
                tumour_site,
                figure: figure(i),
            })
            .collect(),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mean that is not a positive number draws no arrivals, at once:
    /// a NaN would never meet the loop's limit (none is known to arise).
    #[test]
    fn a_poisson_draw_of_no_number_is_none() {
        let mut rng = Rng(SplitMix64::new(7));
        for mean in [f64::NAN, f64::INFINITY, -1.0, 0.0] {
            assert_eq!(rng.poisson(mean), 0.0, "{mean}");
        }
        let draws: f64 = (0..1000).map(|_| rng.poisson(3.0)).sum();
        assert!((2_500.0..3_500.0).contains(&draws), "{draws}");
    }
}
