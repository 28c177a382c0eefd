//! The new day's benchmark (`bench --views --new-day`): what the date's
//! change costs at midnight. Every pathway is re-evaluated as of the new
//! day (the runner's bulk refresh, off the async workers, views answering
//! meanwhile from the old day's states), then today's aggregates are built
//! afresh; until both are done, views of the new day take the slow path.
//! The clock is moved on a day, and the projection watched until it has
//! settled on the new date.

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
/// took to evaluate every pathway on it and to build today's aggregates.
pub async fn measure(app: &Arc<App>, clock: &ShiftedClock) -> anyhow::Result<()> {
    let today = london_today(clock.now());
    let tomorrow = today
        .checked_add_days(Days::new(1))
        .ok_or_else(|| anyhow::anyhow!("no day after {today}"))?;
    // A day on, or a little more across a change to summer time.
    let mut shift = 24 * 3600;
    while london_today(Utc::now() + chrono::Duration::seconds(shift)) == today {
        shift += 3600;
    }
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
        "a new day ({tomorrow}): every pathway re-evaluated and in place {:.2}s after the date changed (the runner looks each second), today's aggregates built {:.2}s after it",
        evaluated.as_secs_f64(),
        aggregates.as_secs_f64()
    );
    Ok(())
}
