//! The forecast backtest (`bench --forecast`, issue 24): on the synthetic
//! alliance with site-specific waits, on the 10th and 20th of each month
//! it forecasts the month-end figures of each standard by trust as known
//! then (a past `as_of`: only events that had happened), and each running
//! clock's breach risk, then compares them with what happened. Prints one
//! summary line, the figures by standard and forecast day, and a
//! calibration table by risk decile. Asserts nothing: it measures.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{Days, NaiveDate, TimeZone, Utc};
use openptl_app::access::Principal;
use openptl_app::{App, FixedClock, TrustFilter, ViewAt};
use openptl_log::MemoryLog;
use openptl_rules::forecast::{Model, ModelOptions, Observation, Outcome};
use openptl_rules::{ClockKind, Period, RulesConfig};

use crate::demo::{self, Waits};

/// The last day of the synthetic history: fixed, so runs compare.
const END: (i32, u32, u32) = (2026, 10, 31);

/// Months at the start of the history left out: the first months have no
/// long waits yet, unlike any real service.
const WARM_UP_DAYS: u64 = 120;

/// The days of each month a forecast is made on.
const FORECAST_DAYS: [u32; 2] = [10, 20];

const STANDARDS: [(ClockKind, &str); 3] = [
    (ClockKind::Fds, "FDS"),
    (ClockKind::D62, "62-day"),
    (ClockKind::D31, "31-day"),
];

/// One trust's projected month-end figure against what happened.
struct Compared {
    standard: ClockKind,
    day: u32,
    error: f64,
    covered: bool,
}

/// A clock's risk as forecast, and whether it breached.
struct Scored {
    risk: f64,
    breached: bool,
}

fn at(as_of: Option<NaiveDate>) -> ViewAt {
    ViewAt {
        as_of,
        known_at: None,
        min_position: None,
    }
}

/// Which clock an observation is, across views of different dates.
fn identity(id: &str, o: &Observation) -> (String, ClockKind, NaiveDate) {
    (id.to_string(), o.kind, o.start)
}

/// Whether a clock breached its target (waited beyond it, whatever ended
/// it), once that is known: `None` while it still runs within target.
fn breached(o: &Observation) -> Option<bool> {
    match o.outcome {
        Outcome::Stopped | Outcome::Closed => Some(o.past_target()),
        Outcome::Running if o.past_target() => Some(true),
        Outcome::Running => None,
    }
}

/// Whether a clock's outcome is settled by the end of the history: its
/// target day at least a fortnight before (room for adjustments), so the
/// clocks scored are not only those that ended early.
fn settled_by(o: &Observation, end: NaiveDate) -> bool {
    o.start + Days::new((o.target_days + 14).max(0) as u64) <= end
}

/// `openptl bench --forecast`.
pub async fn forecast(pathways: usize, seed: u64, referral_days: u64) -> anyhow::Result<()> {
    let end = NaiveDate::from_ymd_opt(END.0, END.1, END.2).expect("a valid date");
    let now = Utc.from_utc_datetime(&end.and_hms_opt(12, 0, 0).expect("noon"));
    let app = App::new(
        Arc::new(MemoryLog::new()),
        RulesConfig::defaults(),
        Arc::new(FixedClock(now)),
    );
    let system = Principal::system("forecast-backtest");
    let events = demo::generate_with(0..pathways, seed, end, referral_days, Waits::BySite);
    println!(
        "openptl bench --forecast: {pathways} pathways (seed {seed}, site-specific waits), referrals over {referral_days} days to {end}, {} events",
        events.len()
    );
    for chunk in events.chunks(500) {
        app.append(chunk.to_vec(), &system, true)
            .await
            .map_err(|e| anyhow::anyhow!("the synthetic alliance was refused: {e:?}"))?;
    }
    app.caught_up(std::time::Duration::from_secs(600)).await;

    let first = Period::of(end - Days::new(referral_days.saturating_sub(WARM_UP_DAYS)));
    let mut months = Vec::new();
    let mut month = first;
    while month.last_day() <= end {
        months.push(month);
        month = Period::of(month.last_day() + Days::new(1));
    }
    let all = TrustFilter(None);
    let mut compared = Vec::new();
    let mut forecasts = Vec::new();
    for &month in &months {
        for day in FORECAST_DAYS {
            let as_of = month.first_day() + Days::new(u64::from(day) - 1);
            let (seen, _) = app.clock_observations(&at(Some(as_of)), &system).await?;
            let model = Model::fit(seen.iter().map(|(_, o)| o), ModelOptions::default());
            for (id, o) in &seen {
                if o.outcome == Outcome::Running && !o.past_target() && settled_by(o, end) {
                    forecasts.push((identity(id, o), model.probability(o)));
                }
            }
            for (standard, _) in STANDARDS {
                let (projected, _) = app
                    .forecast(&at(Some(as_of)), standard, Some(month), &all, None, &system)
                    .await?;
                let (actual, _) = app
                    .standards(&at(None), standard, Some(month), &all, None, &system)
                    .await?;
                let actual: HashMap<&str, Option<f64>> = actual
                    .by_trust
                    .iter()
                    .map(|t| (t.trust.as_str(), t.performance.percent))
                    .collect();
                for line in &projected.by_trust {
                    let f = &line.figure;
                    let Some(Some(happened)) = actual.get(line.trust.as_str()) else {
                        continue;
                    };
                    let (Some(percent), Some(low), Some(high)) = (f.percent, f.low, f.high) else {
                        continue;
                    };
                    compared.push(Compared {
                        standard,
                        day,
                        error: (percent - happened).abs(),
                        covered: low <= *happened && *happened <= high,
                    });
                }
            }
        }
    }
    let (latest, _) = app.clock_observations(&at(None), &system).await?;
    let outcomes: HashMap<_, _> = latest
        .iter()
        .map(|(id, o)| (identity(id, o), breached(o)))
        .collect();
    let scored: Vec<Scored> = forecasts
        .into_iter()
        .filter_map(|(clock, risk)| {
            let breached = (*outcomes.get(&clock)?)?;
            Some(Scored { risk, breached })
        })
        .collect();
    print_summary(months.len(), &compared, &scored);
    Ok(())
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        sum / n as f64
    }
}

fn mae(compared: &[Compared], standard: ClockKind, day: Option<u32>) -> f64 {
    mean(
        compared
            .iter()
            .filter(|c| c.standard == standard && day.is_none_or(|d| c.day == d))
            .map(|c| c.error),
    )
}

fn print_summary(months: usize, compared: &[Compared], scored: &[Scored]) {
    let brier = mean(scored.iter().map(|s| {
        let y = if s.breached { 1.0 } else { 0.0 };
        (s.risk - y).powi(2)
    }));
    let coverage = 100.0 * mean(compared.iter().map(|c| f64::from(u8::from(c.covered))));
    println!(
        "forecast backtest: {months} month-ends, mean absolute error {:.1} pp (FDS), {:.1} pp (62-day), {:.1} pp (31-day); Brier score {brier:.3}; 80% interval coverage {coverage:.0}%",
        mae(compared, ClockKind::Fds, None),
        mae(compared, ClockKind::D62, None),
        mae(compared, ClockKind::D31, None),
    );
    println!(
        "trust-level month-end figures ({} forecasts), by forecast day:",
        compared.len()
    );
    println!("  standard  day  forecasts  mean abs error  80% coverage");
    for (standard, name) in STANDARDS {
        for day in FORECAST_DAYS {
            let lines: Vec<&Compared> = compared
                .iter()
                .filter(|c| c.standard == standard && c.day == day)
                .collect();
            let covered = 100.0 * mean(lines.iter().map(|c| f64::from(u8::from(c.covered))));
            println!(
                "  {name:<8}  {day:>3}  {:>9}  {:>11.1} pp  {covered:>11.0}%",
                lines.len(),
                mae(compared, standard, Some(day)),
            );
        }
    }
    println!(
        "calibration by risk decile ({} forecasts of running clocks within target, outcome settled):",
        scored.len()
    );
    println!("  decile  clocks  predicted  observed  difference");
    let mut sorted: Vec<&Scored> = scored.iter().collect();
    sorted.sort_by(|a, b| a.risk.total_cmp(&b.risk));
    let n = sorted.len();
    for decile in 0..10 {
        let part = &sorted[n * decile / 10..n * (decile + 1) / 10];
        let predicted = 100.0 * mean(part.iter().map(|s| s.risk));
        let observed = 100.0 * mean(part.iter().map(|s| f64::from(u8::from(s.breached))));
        println!(
            "  {:>6}  {:>6}  {predicted:>8.1}%  {observed:>7.1}%  {:>+9.1} pp",
            decile + 1,
            part.len(),
            observed - predicted
        );
    }
}
