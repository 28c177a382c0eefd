//! Views at midnight (decision 220). When the date changes, the runner
//! brings every pathway's state to the new day and builds its aggregates
//! again: seconds at alliance scale (decision 219). A view of the new day
//! asked meanwhile would be a past view of a later date: it would work out
//! every state itself, on the cores the runner needs, and queue at the past
//! views' gate. It waits for the runner instead, bounded, and then answers
//! from the new day's states as on any other day. The forecast refresher
//! learns the new day's breach-risk model as soon as the runner is done
//! ([`crate::forecast::refresh_periodically`]).

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::App;

/// How long views of the new day wait for the runner, in all, before
/// working the states out themselves: some seconds at alliance scale, far
/// less than their own way would take while the runner competes with them.
const NEW_DAY_WAIT: Duration = Duration::from_secs(20);

impl App {
    /// Waits (bounded) while the runner brings the states to today, when a
    /// view is of today as known now: just after midnight, until the
    /// states are evaluated on the new day (and, with `aggregates`, its
    /// aggregates built). Every wait for a day ends by the same deadline.
    /// No wait at any other time, nor while the runner is stuck, starting
    /// or catching up a backlog ([`crate::projection::Projection::settling_towards`]).
    pub(crate) async fn wait_for_today(
        &self,
        as_of: NaiveDate,
        known_at: Option<DateTime<Utc>>,
        aggregates: bool,
    ) {
        if known_at.is_some() || as_of != self.today() {
            return;
        }
        let projection = &self.projection;
        if !projection.settling_towards(as_of, aggregates) {
            return;
        }
        let started = std::time::Instant::now();
        let arrived = projection
            .wait_for_day(as_of, aggregates, NEW_DAY_WAIT)
            .await;
        tracing::debug!(
            arrived,
            aggregates,
            ms = started.elapsed().as_millis() as u64,
            "a view of the new day waited for the runner"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use chrono::{DateTime, NaiveDate, Utc};
    use openptl_log::MemoryLog;
    use openptl_rules::{ClockKind, Period, RulesConfig};

    use crate::access::Principal;
    use crate::histories::{event_of, runtime, Settable};
    use crate::{App, PathwayQuery, PtlQuery, TrustFilter, ViewAt};

    /// An app on 20 May 2025 (noon) with two pathways folded in, its
    /// runner caught up, and the clock the test moves on.
    async fn app_on_a_day() -> (Arc<App>, Arc<Settable>) {
        let start: DateTime<Utc> = "2025-05-20T12:00:00Z".parse().unwrap();
        let clock = Arc::new(Settable(Mutex::new(start)));
        let log = Arc::new(MemoryLog::new());
        let app = Arc::new(App::new(log, RulesConfig::defaults(), clock.clone()));
        let events = vec![
            event_of("P0", 0, 120, 0),
            event_of("P0", 9, 130, 1),
            event_of("P1", 0, 135, 0),
        ];
        let system = Principal::system("test");
        app.append(events, &system, false).await.unwrap();
        assert!(app.caught_up(Duration::from_secs(30)).await);
        // Serving: the runner has reached the head once.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !app.projection().has_caught_up() {
            assert!(std::time::Instant::now() < deadline, "never caught up");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (app, clock)
    }

    fn moved_on(clock: &Settable, to: &str) -> NaiveDate {
        *clock.0.lock().unwrap() = format!("{to}T00:00:05Z").parse().unwrap();
        to.parse().unwrap()
    }

    /// The views of the new day asked as the date changes: a PTL page, the
    /// standards (from the aggregates) and a pathway view, as JSON.
    async fn views_of_today(app: &App, day: NaiveDate) -> [serde_json::Value; 3] {
        let system = Principal::system("test");
        let page = app.ptl(&PtlQuery::default(), &system).await.unwrap();
        let (standards, _) = app
            .standards(
                &ViewAt::default(),
                ClockKind::Fds,
                Some(Period::of(day)),
                &TrustFilter::default(),
                None,
                &system,
            )
            .await
            .unwrap();
        let pathway = app
            .pathway("P0", &PathwayQuery::default(), &system)
            .await
            .unwrap();
        [
            serde_json::to_value(page).unwrap(),
            serde_json::to_value(standards).unwrap(),
            serde_json::to_value(pathway).unwrap(),
        ]
    }

    #[test]
    fn views_of_the_new_day_wait_for_the_runner_not_the_past_views() {
        runtime().block_on(async {
            let (app, clock) = app_on_a_day().await;
            // A view of a date the projection is not on would queue here,
            // behind a past view that does not end until the test does.
            let _gate = app.hold_past_view_turn().await;
            let day = moved_on(&clock, "2025-05-21");
            let asked = tokio::time::timeout(Duration::from_secs(20), views_of_today(&app, day));
            let during = asked.await.expect("the views of the new day were answered");
            assert_eq!(app.projection().day(), (Some(day), true));
            // As the same views show once the day has settled.
            assert_eq!(during, views_of_today(&app, day).await);
        });
    }

    #[test]
    fn a_view_of_another_day_does_not_wait() {
        runtime().block_on(async {
            let (app, _clock) = app_on_a_day().await;
            let system = Principal::system("test");
            // The states on 20 May and the clock too: a view as of a later
            // date is a past view, which no runner is on its way to, though
            // the states are on an earlier day.
            let later: NaiveDate = "2025-05-27".parse().unwrap();
            assert!(app.projection().settling_towards(later, false));
            let query = PtlQuery {
                at: ViewAt {
                    as_of: Some(later),
                    ..ViewAt::default()
                },
                ..PtlQuery::default()
            };
            let page = tokio::time::timeout(Duration::from_secs(10), app.ptl(&query, &system));
            page.await.expect("answered without waiting").unwrap();
            let on = app.projection().day().0;
            assert_eq!(on, Some("2025-05-20".parse().unwrap()));
        });
    }

    #[test]
    fn every_wait_for_a_day_ends_by_one_deadline() {
        runtime().block_on(async {
            let (app, _clock) = app_on_a_day().await;
            let projection = app.projection();
            // A day the runner is not on its way to (the clock stays on 20
            // May), which it would seem on its way to for ever.
            let later: NaiveDate = "2025-05-27".parse().unwrap();
            assert!(projection.settling_towards(later, false));
            let limit = Duration::from_millis(400);
            let started = std::time::Instant::now();
            assert!(!projection.wait_for_day(later, false, limit).await);
            let first = started.elapsed();
            assert!(first >= limit, "{first:?}");
            // A second wait for the same day, as a view's next step would
            // make: its deadline has passed already.
            let started = std::time::Instant::now();
            assert!(!projection.wait_for_day(later, true, limit).await);
            assert!(started.elapsed() < limit / 2, "{:?}", started.elapsed());
            // Another day has a deadline of its own.
            let other = later.succ_opt().unwrap();
            let started = std::time::Instant::now();
            assert!(!projection.wait_for_day(other, false, limit).await);
            assert!(started.elapsed() >= limit);
        });
    }

    #[test]
    fn the_refresher_learns_the_new_day_once_the_runner_is_done() {
        runtime().block_on(async {
            let (app, clock) = app_on_a_day().await;
            let refresher =
                tokio::spawn(crate::forecast::refresh_periodically(Arc::downgrade(&app)));
            let learnt = async |day: NaiveDate| {
                let deadline = std::time::Instant::now() + Duration::from_secs(30);
                while app.forecasts_projected_on() != Some(day) {
                    assert!(std::time::Instant::now() < deadline, "not learnt for {day}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            learnt("2025-05-20".parse().unwrap()).await;
            // No view asks: the refresher does not wait its ten minutes.
            let day = moved_on(&clock, "2025-05-21");
            learnt(day).await;
            refresher.abort();
        });
    }
}
