//! The new day's benchmark (`bench --views --new-day`): what the date's
//! change costs at midnight. Every pathway's state is brought to the new
//! day (the runner's bulk refresh, off the async workers, views answering
//! meanwhile from the old day's states: moved where it can be, else read
//! back and evaluated, decision 219), then today's aggregates are built
//! afresh; until both are done, views of the new day take the slow path.
//! The clock is moved on to the next day, and the projection watched until
//! it has settled on it. How many states were moved: the runner's log line
//! ("projection re-evaluated many pathways", `moved`).
//!
//! As when served: the forecast refresher runs (today's breach-risk model
//! learnt before the clock moves), and views of the new day are asked
//! meanwhile, a PTL page, the FDS standards and `/metrics`, each on its
//! own, half a second after its last answer, from the date's change until some seconds after the refresher
//! has projected the new day's month ends: what a coordinator or a
//! manager at work at midnight waits for.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, NaiveDate, Utc};
use openptl_app::access::Principal;
use openptl_app::{london_today, App, Clock, PtlQuery, TrustFilter, ViewAt};
use openptl_rules::{ClockKind, Period};
use tokio::sync::watch;

/// The machine's clock moved on by a number of seconds.
#[derive(Default)]
pub struct ShiftedClock {
    seconds: AtomicI64,
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.seconds.load(Ordering::Relaxed))
    }
}

/// Moves `clock` on to the next day in London and prints how long `app`
/// took to bring every pathway's state to it and to build today's
/// aggregates.
pub async fn measure(app: &Arc<App>, clock: &ShiftedClock) -> anyhow::Result<()> {
    let today = london_today(clock.now());
    let tomorrow = today
        .checked_add_days(Days::new(1))
        .ok_or_else(|| anyhow::anyhow!("no day after {today}"))?;
    // To noon of the next day (UTC, so 12:00 or 13:00 in London: the same
    // date), not a day on from the same hour, which could skip a day or
    // stay across a change of the clocks.
    let now = Utc::now();
    let noon = tomorrow.and_hms_opt(12, 0, 0).map(|noon| noon.and_utc());
    let noon = noon.ok_or_else(|| anyhow::anyhow!("no noon on {tomorrow}"))?;
    let shift = (noon - now).num_seconds();
    anyhow::ensure!(
        london_today(now + chrono::Duration::seconds(shift)) == tomorrow,
        "the clock could not be moved on to {tomorrow}"
    );
    let (on, _) = app.projection().day();
    anyhow::ensure!(
        on == Some(today),
        "the projection is not on {today} ({on:?})"
    );
    // The forecast refresher, as `serve` runs it: today's model learnt
    // before midnight.
    let learnt = Instant::now();
    let refresher = tokio::spawn(openptl_app::forecast::refresh_periodically(Arc::downgrade(
        app,
    )));
    let (stop, stopped) = watch::channel(false);
    // However the measurement ends, the views and the refresher stop.
    let _stops = Stops {
        stop: stop.clone(),
        refresher: refresher.abort_handle(),
    };
    while app.forecasts_projected_on() != Some(today) {
        anyhow::ensure!(
            learnt.elapsed() < Duration::from_secs(600),
            "today's forecasts were not refreshed within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    clock.seconds.store(shift, Ordering::Relaxed);
    let views = tokio::spawn(ask_views(app.clone(), tomorrow, started, stopped));
    let mut evaluated = None;
    let built = loop {
        let (on, kept) = app.projection().day();
        if on == Some(tomorrow) {
            let at = *evaluated.get_or_insert_with(|| started.elapsed());
            if kept {
                break (at, started.elapsed());
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the projection did not settle on {tomorrow} within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let (evaluated, aggregates) = built;
    // The refresher's new day: the model learnt, the month ends projected.
    while app.forecasts_projected_on() != Some(tomorrow) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "the forecasts were not refreshed for {tomorrow} within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let projected = started.elapsed();
    // The views go on a little after, to show them settled.
    tokio::time::sleep(AFTER).await;
    stop.send_replace(true);
    let asked = views.await??;
    println!(
        "a new day ({tomorrow}): every pathway's state on it and in place {:.2}s after the date changed (the runner looks each second), today's aggregates built {:.2}s after it",
        evaluated.as_secs_f64(),
        aggregates.as_secs_f64()
    );
    println!(
        "the forecast refresher: the new day's month ends projected {:.2}s after the date changed; views of the new day asked each on its own, {:.1}s after its last answer, until {:.0}s after that:",
        projected.as_secs_f64(),
        PAUSE.as_secs_f64(),
        AFTER.as_secs_f64(),
    );
    for kind in VIEWS {
        let (during, after): (Vec<&Asked>, Vec<&Asked>) = asked
            .iter()
            .filter(|a| a.view == kind)
            .partition(|a| a.at < aggregates);
        let longest = |of: &[&Asked]| {
            of.iter()
                .map(|a| a.took)
                .max()
                .unwrap_or_default()
                .as_secs_f64()
        };
        let first = during.first().or(after.first());
        println!(
            "  {}: the first asked at {:.2}s took {:.3}s; {} asked before the aggregates were kept, the longest {:.3}s; {} after, the longest {:.3}s",
            kind.label(),
            first.map_or(0.0, |a| a.at.as_secs_f64()),
            first.map_or(0.0, |a| a.took.as_secs_f64()),
            during.len(),
            longest(&during),
            after.len(),
            longest(&after)
        );
    }
    Ok(())
}

/// Stops the views asked and the refresher when dropped.
struct Stops {
    stop: watch::Sender<bool>,
    refresher: tokio::task::AbortHandle,
}

impl Drop for Stops {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        self.refresher.abort();
    }
}

/// Between one view and the next.
const PAUSE: Duration = Duration::from_millis(500);

/// How long the views go on after the month ends are projected.
const AFTER: Duration = Duration::from_secs(5);

/// The views asked at midnight.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    Ptl,
    Standards,
    Metrics,
}

/// In the order they are asked.
const VIEWS: [View; 3] = [View::Ptl, View::Standards, View::Metrics];

impl View {
    fn label(self) -> &'static str {
        match self {
            View::Ptl => "PTL page (100 rows, all trusts, by days waited)",
            View::Standards => "standards (FDS, this month, all trusts)",
            View::Metrics => "/metrics (a Prometheus scrape)",
        }
    }
}

/// One view asked: when (after the date's change), and how long it took.
struct Asked {
    view: View,
    at: Duration,
    took: Duration,
}

/// Asks each of the [`VIEWS`] of `day`, each on its own ([`PAUSE`] after
/// its last answer), as a coordinator, a manager and Prometheus would,
/// until `stop`.
async fn ask_views(
    app: Arc<App>,
    day: NaiveDate,
    started: Instant,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Asked>> {
    let askers: Vec<_> = VIEWS
        .into_iter()
        .map(|view| tokio::spawn(ask_view(app.clone(), view, day, started, stop.clone())))
        .collect();
    let mut asked = Vec::new();
    for asker in askers {
        asked.extend(asker.await??);
    }
    Ok(asked)
}

/// Asks `view` of `day` again and again, [`PAUSE`] apart, until `stop`.
async fn ask_view(
    app: Arc<App>,
    view: View,
    day: NaiveDate,
    started: Instant,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<Vec<Asked>> {
    let system = Principal::system("bench");
    let page = PtlQuery {
        limit: Some(100),
        ..PtlQuery::default()
    };
    let all = TrustFilter::default();
    let mut asked = Vec::new();
    while !*stop.borrow() {
        let at = started.elapsed();
        let t = Instant::now();
        let body = match view {
            View::Ptl => serde_json::to_vec(&app.ptl(&page, &system).await?)?,
            View::Standards => {
                let (report, _) = app
                    .standards(
                        &ViewAt::default(),
                        ClockKind::Fds,
                        Some(Period::of(day)),
                        &all,
                        None,
                        &system,
                    )
                    .await?;
                serde_json::to_vec(&report)?
            }
            View::Metrics => app.metrics_text().await?.into_bytes(),
        };
        std::hint::black_box(body);
        asked.push(Asked {
            view,
            at,
            took: t.elapsed(),
        });
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(PAUSE) => {}
        }
    }
    Ok(asked)
}
