//! The new day's benchmark (`bench --views --new-day`): what the date's
//! change costs at midnight. Every pathway's state is brought to the new
//! day (the runner's bulk refresh, off the async workers, views answering
//! meanwhile from the old day's states: moved where it can be, else read
//! back and evaluated, decision 219), then today's aggregates are built
//! afresh; until both are done, views of the new day take the slow path.
//! The clock is moved on to the next day, and the projection watched until
//! it has settled on it. How many states were moved: the runner's log line
//! ("projection re-evaluated many pathways", `moved`).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, Utc};
use openptl_app::{london_today, App, Clock};

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
    let started = Instant::now();
    clock.seconds.store(shift, Ordering::Relaxed);
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
    println!(
        "a new day ({tomorrow}): every pathway's state on it and in place {:.2}s after the date changed (the runner looks each second), today's aggregates built {:.2}s after it",
        evaluated.as_secs_f64(),
        aggregates.as_secs_f64()
    );
    Ok(())
}
