//! Fast past views equal the full re-evaluation (issue 22): after any
//! sequence of appends, corrections, voids, declined offers, subsequent
//! plans and day changes, every view as of a past date or as known at a
//! past moment, answered by moving the projection's states, equals the
//! same view with every pathway's history read back and evaluated.

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc, Weekday};
use proptest::prelude::*;
use serde::Serialize;

use crate::access::Principal;
use crate::histories::{op, run};
use crate::views::{PtlQuery, PtlSort, TrustFilter, ViewAt, Worklist};
use crate::App;
use openptl_rules::{ClockKind, Period, TumourSite};

/// The same view read fast and read by the full re-evaluation, as JSON.
async fn both<T: Serialize>(
    app: &App,
    view: impl AsyncFn() -> Result<T, crate::AppError>,
) -> (serde_json::Value, serde_json::Value) {
    app.set_past_views_read_all(false);
    let fast = serde_json::to_value(view().await.unwrap()).unwrap();
    app.set_past_views_read_all(true);
    let full = serde_json::to_value(view().await.unwrap()).unwrap();
    (fast, full)
}

/// Every past view for a few dates back and moments before now equals
/// the full re-evaluation.
async fn check(
    app: &App,
    moments: &[DateTime<Utc>],
    picks: &[(u16, u16)],
) -> Result<(), TestCaseError> {
    app.caught_up(std::time::Duration::from_secs(5)).await;
    let system = Principal::system("test");
    let today = app.today();
    let mut ats = Vec::new();
    for (back, moment) in picks {
        let as_of = today - Days::new(u64::from(*back % 60));
        ats.push(ViewAt {
            as_of: Some(as_of),
            ..ViewAt::default()
        });
        if let Some(known_at) =
            (!moments.is_empty()).then(|| moments[usize::from(*moment) % moments.len()])
        {
            ats.push(ViewAt {
                as_of: Some(as_of),
                known_at: Some(known_at),
                min_position: None,
            });
            ats.push(ViewAt {
                as_of: Some(today),
                known_at: Some(known_at),
                min_position: None,
            });
        }
    }
    let trusts = TrustFilter::default();
    for at in &ats {
        let as_of = at.as_of.unwrap_or(today);
        // By risk first (no model of the date kept yet: every row's state
        // is kept to score them), then by days waited, then a short page
        // by risk again (the kept model: rows scored where their states
        // are moved, and the page's states made again).
        let by_risk = PtlQuery {
            at: at.clone(),
            sort: PtlSort::BreachRisk,
            ..PtlQuery::default()
        };
        let queries = [
            by_risk.clone(),
            PtlQuery {
                at: at.clone(),
                ..PtlQuery::default()
            },
            PtlQuery {
                limit: Some(2),
                worklist: Some(Worklist::LikelyToBreach),
                ..by_risk
            },
        ];
        for query in &queries {
            let (fast, full) = both(app, async || app.ptl(query, &system).await).await;
            prop_assert_eq!(
                fast,
                full,
                "PTL as of {} known at {:?}, {:?}",
                as_of,
                at.known_at,
                query
            );
        }
        for period in [Period::of(as_of), Period::of(as_of - Days::new(31))] {
            for standard in ClockKind::ALL {
                let (fast, full) = both(app, async || {
                    app.standards(at, *standard, Some(period), &trusts, None, &system)
                        .await
                })
                .await;
                prop_assert_eq!(fast, full, "{:?} {:?} at {:?}", standard, period, at);
            }
            // One tumour site (kept from the cells at the end).
            let site = Some(TumourSite::LowerGi);
            let (fast, full) = both(app, async || {
                app.standards(at, ClockKind::Fds, Some(period), &trusts, site, &system)
                    .await
            })
            .await;
            prop_assert_eq!(fast, full, "FDS {:?} of a site at {:?}", period, at);
            let (fast, full) = both(app, async || {
                app.milestones(at, Some(period), &trusts, site, &system)
                    .await
            })
            .await;
            prop_assert_eq!(fast, full, "milestones {:?} of a site at {:?}", period, at);
            for month in [None, Some(period)] {
                let (fast, full) = both(app, async || {
                    app.milestones(at, month, &trusts, None, &system).await
                })
                .await;
                prop_assert_eq!(fast, full, "milestones {:?} at {:?}", month, at);
            }
            let (fast, full) =
                both(app, async || app.cwt(at, period, &trusts, &system).await).await;
            prop_assert_eq!(fast, full, "CWT {:?} at {:?}", period, at);
            let (fast, full) = both(app, async || {
                app.fit(at, Some(period), &trusts, &system).await
            })
            .await;
            prop_assert_eq!(fast, full, "FIT {:?} at {:?}", period, at);
        }
        let sunday = last_sunday(as_of);
        let (fast, full) = both(app, async || {
            app.canptl(sunday, at.known_at, &trusts, &system).await
        })
        .await;
        prop_assert_eq!(fast, full, "CANPTL {} at {:?}", sunday, at);
    }
    // A view of today as known at the last moment (every record known
    // then) takes the past views' way, trust and site filters included;
    // today's as known now reads today's cells: the two agree.
    if let Some(last) = moments.last() {
        let site = Some(TumourSite::LowerGi);
        let known = ViewAt {
            as_of: Some(today),
            known_at: Some(*last),
            min_position: None,
        };
        let now = ViewAt::default();
        app.set_past_views_read_all(false);
        let months = [Period::of(today), Period::of(today - Days::new(31))];
        for (standard, period) in ClockKind::ALL.iter().flat_map(|k| months.map(|p| (k, p))) {
            let past = app
                .standards(&known, *standard, Some(period), &trusts, site, &system)
                .await
                .unwrap();
            let kept = app
                .standards(&now, *standard, Some(period), &trusts, site, &system)
                .await
                .unwrap();
            prop_assert_eq!(
                past.0,
                kept.0,
                "{:?} {:?} of a site, past way and cells",
                standard,
                period
            );
        }
        let past = app
            .milestones(&known, None, &trusts, site, &system)
            .await
            .unwrap();
        let kept = app
            .milestones(&now, None, &trusts, site, &system)
            .await
            .unwrap();
        prop_assert_eq!(past.0, kept.0, "milestones of a site, past way and cells");
    }
    // Every state of today read through a snapshot, outside the lock
    // (decision 159), is the projection's own.
    let every = |seen: &mut dyn Iterator<Item = crate::views::Seen<'_>>| {
        let mut states: Vec<_> = seen
            .map(|s| (s.id().to_string(), s.state().clone()))
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        states
    };
    app.set_past_views_read_all(false);
    let (copied, _) = app.with_every_state(today, None, every).await.unwrap();
    let (locked, _) = app
        .with_states(today, None, crate::past::Shown::All, every)
        .await
        .unwrap();
    prop_assert_eq!(copied, locked, "every state of today");
    app.set_past_views_read_all(true);
    Ok(())
}

fn last_sunday(day: NaiveDate) -> NaiveDate {
    day - Days::new(u64::from(day.weekday().num_days_from_sunday()))
        - Days::new(if day.weekday() == Weekday::Sun { 7 } else { 0 })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn fast_past_views_equal_the_full_re_evaluation(
        // Referred in the weeks before the clock's start, so events fall
        // around today and the earlier states kept (the last two weeks)
        // are the ones past views move.
        referrals in proptest::collection::vec((any::<u8>(), 80u16..140), 5),
        ops in proptest::collection::vec(op(), 1..60),
        picks in proptest::collection::vec((any::<u16>(), any::<u16>()), 2),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(referrals, ops, async |app: &App, moments: &[DateTime<Utc>]| {
            check(app, moments, &picks).await
        }))?;
    }
}
