//! The views benchmark (`bench --views`): restart with and without a
//! snapshot, projection memory, PTL pages, aggregate views, pathway views,
//! append-to-visible and the snapshot itself, on a synthetic alliance.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openptl_app::{App, Clock, SystemClock};
use openptl_log::{EventLog, SegmentLog};
use openptl_rules::counted::{ClockFilter, ClockOutcome};
use openptl_rules::{Period, RulesConfig};
use serde_json::json;

use super::data::write_alliance;
use super::memory::{resident_bytes, trim_heap};
use super::report::report;

/// `openptl bench --views`: the projection and view figures of SPEC 7 on a
/// synthetic alliance of `pathways` pathways written straight into a fresh
/// log (valid by construction, so the write skips the rules to save time).
pub async fn views(
    pathways: usize,
    seed: u64,
    data_dir: Option<PathBuf>,
    referral_days: u64,
    memory_only: bool,
    new_day: bool,
) -> anyhow::Result<()> {
    use openptl_app::{PathwayQuery, PtlQuery, PtlSort, TrustFilter, ViewAt, Worklist};

    let keep = data_dir.is_some();
    let dir = data_dir.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("openptl-bench-views-{}", std::process::id()))
    });
    let reuse = keep && dir.join("segments").is_dir();
    if !reuse {
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::fs::create_dir_all(&dir)?;
    let today = openptl_app::london_today(chrono::Utc::now());
    println!(
        "openptl bench --views: {pathways} pathways (seed {seed}), data in {}",
        dir.display()
    );

    if reuse {
        println!("reusing the alliance already in {}", dir.display());
    } else {
        write_alliance(&dir, pathways, seed, today, referral_days).await?;
    }

    // Restart without a snapshot: open the log, then fold every event into
    // the projection.
    let snapshot = dir.join("projection.snapshot");
    if snapshot.exists() {
        // A snapshot left by an earlier run (`--data-dir`): restore from it in
        // a fresh process, where resident memory is the projection's own.
        let before = resident_bytes();
        let (log, app, opened, serving) = restart(&dir, &snapshot, Arc::new(SystemClock)).await?;
        let restored = app.projection().restored_at().is_some();
        let (_, open) = app.projection().counts();
        let checked = background_check_done(log.as_ref()).await;
        let untrimmed = resident_bytes().saturating_sub(before);
        trim_heap();
        let memory = resident_bytes().saturating_sub(before);
        println!(
            "restart from an earlier run's snapshot (used: {restored}): log open {:.2}s, serving after {:.2}s; background check done {:.1}s later; {:.0} MiB resident ({:.0} MiB before freed pages were returned): {:.0} bytes per open pathway ({open}), {:.0} per event",
            opened.as_secs_f64(),
            serving.as_secs_f64(),
            checked.as_secs_f64(),
            memory as f64 / 1048576.0,
            untrimmed as f64 / 1048576.0,
            memory as f64 / open.max(1) as f64,
            memory as f64 / log.head().max(1) as f64,
        );
        drop(app);
        drop(log);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // The log on its own, for the memory accounting.
        trim_heap();
        let before = resident_bytes();
        let log = SegmentLog::open(&dir)?;
        background_check_done(&log).await;
        trim_heap();
        println!(
            "the log alone (sled index, record locations, event-id filter): {:.0} MiB resident",
            resident_bytes().saturating_sub(before) as f64 / 1048576.0
        );
        drop(log);
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let _ = std::fs::remove_file(&snapshot);
    trim_heap();
    let before = resident_bytes();
    // A clock the new day's measurement can move on (the machine's, until
    // then).
    let clock = Arc::new(super::new_day::ShiftedClock::default());
    let (log, app, opened, serving) = restart(&dir, &snapshot, clock.clone()).await?;
    let events = log.head();
    let (total, open) = app.projection().counts();
    // The states replaced in the last days, written from the log after the
    // fold (decision 162): views as known at a moment take them.
    let backfill = Instant::now();
    let ready = app.replaced_states_ready(Duration::from_secs(600)).await;
    let (_, replaced_bytes, _) = app.projection().replaced_states().unwrap_or_default();
    println!(
        "replaced states of the last days written from the log {:.1}s after serving (complete: {ready}): {:.0} MiB on disk",
        backfill.elapsed().as_secs_f64(),
        replaced_bytes as f64 / 1048576.0
    );
    let checked = background_check_done(log.as_ref()).await;
    println!(
        "background check (hash chain of sealed segments, event-id filter) done {:.1}s after serving",
        checked.as_secs_f64()
    );
    trim_heap();
    let memory = resident_bytes().saturating_sub(before);
    println!(
        "restart: log open {:.2}s, projection of {events} events built, serving after {:.2}s ({:.0} events/s folded)",
        opened.as_secs_f64(),
        serving.as_secs_f64(),
        events as f64 / (serving - opened).as_secs_f64()
    );
    println!(
        "projection memory: {:.0} MiB resident for {total} pathways ({open} open): {:.0} bytes per open pathway, {:.0} bytes per event",
        memory as f64 / 1048576.0,
        memory as f64 / open.max(1) as f64,
        memory as f64 / events.max(1) as f64
    );

    let structures = app.projection().memory();
    let mib = |bytes: usize| bytes as f64 / 1048576.0;
    println!(
        "packed states: {:.0} MiB, of which earlier states kept for past views {:.1} MiB ({:.0} bytes per open pathway)",
        mib(structures.packed),
        mib(structures.earlier),
        structures.earlier as f64 / open.max(1) as f64
    );
    // What the resident figure is made of: the projection's structures as
    // allocated; the rest is the log's (sled, record locations, event-id
    // filter), the allocator's and the runtime's.
    println!(
        "projection structures: {:.0} MiB ({:.0} bytes per open pathway): packed states {:.0}, entries and their table {:.0}, ids {:.0}, record positions {:.0}, PTL index {:.0}, record dates {:.1} MiB; the other {:.0} MiB resident are the log's, the allocator's and the runtime's",
        mib(structures.total()),
        structures.total() as f64 / open.max(1) as f64,
        mib(structures.packed),
        mib(structures.entries),
        mib(structures.ids),
        mib(structures.positions),
        mib(structures.ptl),
        mib(structures.record_days),
        (memory as f64 / 1048576.0 - mib(structures.total())).max(0.0),
    );

    if new_day {
        return super::new_day::measure(&app, &clock).await;
    }
    if memory_only {
        return Ok(());
    }
    // Today's breach-risk model (decision 154): learnt, the month-end
    // projections made and every PTL row's risk keys scored, as the
    // refresher does once a day; the PTL pages below then find them kept.
    let t = Instant::now();
    app.refresh_forecasts().await?;
    println!(
        "forecast refresh (learn today's model, project the month ends, score every PTL row): {:.2}s",
        t.elapsed().as_secs_f64()
    );

    // PTL pages: filtered and sorted, 100 rows, serialised as the API does.
    let queries: Vec<(&str, PtlQuery)> = vec![
        (
            "all trusts, by days waited",
            PtlQuery {
                limit: Some(100),
                ..PtlQuery::default()
            },
        ),
        (
            "one trust, lower GI, by next breach",
            PtlQuery {
                trusts: TrustFilter(Some(["RXH".to_string()].into_iter().collect())),
                tumour_sites: vec![openptl_rules::TumourSite::LowerGi],
                sort: PtlSort::NextBreach,
                limit: Some(100),
                ..PtlQuery::default()
            },
        ),
        (
            "worklist ptl_meeting",
            PtlQuery {
                worklist: Some(Worklist::PtlMeeting),
                limit: Some(100),
                ..PtlQuery::default()
            },
        ),
        (
            "all trusts, by breach risk",
            PtlQuery {
                sort: PtlSort::BreachRisk,
                limit: Some(100),
                ..PtlQuery::default()
            },
        ),
        (
            "worklist likely_to_breach, by breach risk",
            PtlQuery {
                worklist: Some(Worklist::LikelyToBreach),
                sort: PtlSort::BreachRisk,
                limit: Some(100),
                ..PtlQuery::default()
            },
        ),
        (
            "breach risk above 50%, by days waited",
            PtlQuery {
                min_breach_risk: Some(50.0),
                limit: Some(100),
                ..PtlQuery::default()
            },
        ),
    ];
    for (label, query) in &queries {
        let mut times = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let page = app
                .ptl(query, &openptl_app::access::Principal::system("bench"))
                .await?;
            let body = serde_json::to_vec(&page)?;
            std::hint::black_box(body);
            times.push(t.elapsed());
        }
        report(&format!("PTL page ({label})"), times);
    }
    // Aggregate views for today: the states they need unpacked (those with
    // a date in the month, or all of them).
    let system = openptl_app::access::Principal::system("bench");
    let month = openptl_rules::Period::of(today);
    let all = TrustFilter::default();
    let now = ViewAt::default();
    let times = timed(20, async || {
        let (report, _) = app
            .standards(
                &now,
                openptl_rules::ClockKind::Fds,
                Some(month),
                &all,
                None,
                &system,
            )
            .await?;
        Ok(serde_json::to_vec(&report)?)
    })
    .await?;
    report("standards view (FDS, this month, all trusts)", times);
    // The clocks behind a figure (decision 187): patient-level, read from
    // the states holding a date in the month.
    let last_month = Period::of(month.first_day() - chrono::Days::new(1));
    for (name, period, outcome) in [
        ("this month, breached", month, Some(ClockOutcome::Breached)),
        ("last month, every clock", last_month, None),
    ] {
        let filter = ClockFilter {
            outcome,
            ..ClockFilter::default()
        };
        let times = timed(10, async || {
            let (_, lines, _) = app
                .standard_clocks(
                    &now,
                    openptl_rules::ClockKind::Fds,
                    Some(period),
                    &all,
                    filter,
                    &system,
                    openptl_app::Page::default(),
                )
                .await?;
            // As `GET /v1/standards/fds/clocks` serves it.
            Ok(openptl_http::list_json(serde_json::Map::new(), lines)?)
        })
        .await?;
        report(&format!("FDS clocks behind the figure ({name})"), times);
    }
    let times = timed(20, async || {
        let (report, _) = app.milestones(&now, None, &all, None, &system).await?;
        Ok(serde_json::to_vec(&report)?)
    })
    .await?;
    report("milestones view (every pathway, all trusts)", times);
    // The pathways behind a milestone figure (decision 190): every
    // referral month, so every pathway's state is read.
    let overdue = openptl_app::MilestoneQuery {
        at: now.clone(),
        period: None,
        trusts: all.clone(),
        tumour_site: openptl_rules::TumourSite::LowerGi,
        milestone: "diagnosis_communicated".into(),
        status: Some(openptl_rules::MilestoneStatus::Overdue),
    };
    let times = timed(10, async || {
        let (lines, _) = app
            .milestone_pathways(&overdue, &system, openptl_app::Page::default())
            .await?;
        Ok(serde_json::to_vec(&lines)?)
    })
    .await?;
    report(
        "lower GI pathways overdue for diagnosis (every month)",
        times,
    );
    // This month's CWT submission, and last month's whole (the one a trust
    // submits in this month): patient-level, their cost follows their rows
    // (decision 149).
    for (name, period) in [("this month", month), ("last month", last_month)] {
        let times = timed(20, async || {
            let (lines, _) = app.cwt(&now, period, &all, &system).await?;
            // As `GET /v1/returns/cwt?format=json` serves it.
            Ok(openptl_http::cwt_json(period, lines)?)
        })
        .await?;
        report(&format!("CWT extract ({name})"), times);
        // As `GET /v1/returns/cwt` serves it by default.
        let times = timed(20, async || {
            let (lines, _) = app.cwt(&now, period, &all, &system).await?;
            Ok(openptl_http::cwt_csv(lines).into_bytes())
        })
        .await?;
        report(&format!("CWT submission as CSV ({name})"), times);
        let (lines, _) = app.cwt(&now, period, &all, &system).await?;
        let rows = lines.len();
        let csv = openptl_http::cwt_csv(lines);
        println!(
            "CWT extract ({name}): {rows} rows, {:.1} MB as CSV",
            csv.len() as f64 / 1e6
        );
    }

    let times = timed(20, async || {
        let (report, _) = app.fit(&now, Some(month), &all, &system).await?;
        Ok(serde_json::to_vec(&report)?)
    })
    .await?;
    report("FIT view (this month)", times);
    let times = timed(20, async || Ok(app.render_metrics().into_bytes())).await?;
    report("/metrics (every gauge)", times);
    // The weekly return for today exists only on a Sunday; the return an
    // alliance asks for on Monday morning is last Sunday's (a past view).
    use chrono::Datelike;
    if today.weekday() == chrono::Weekday::Sun {
        let times = timed(20, async || {
            let (report, _) = app.canptl(today, None, &all, &system).await?;
            Ok(serde_json::to_vec(&report)?)
        })
        .await?;
        report("CANPTL return (today, a Sunday)", times);
        // From today's aggregates; the same return as known far ahead is
        // every pathway re-evaluated as of today.
        let kept = app.canptl(today, None, &all, &system).await?.0;
        let far = Some(chrono::Utc::now() + chrono::Duration::days(3650));
        let full = app.canptl(today, far, &all, &system).await?.0;
        println!(
            "CANPTL return (today, a Sunday) equals the full re-evaluation: {}",
            if kept == full { "yes" } else { "NO" }
        );
    }
    let back = u64::from(today.weekday().num_days_from_sunday());
    let last_sunday = today - chrono::Days::new(if back == 0 { 7 } else { back });
    let times = timed(3, async || {
        let (report, _) = app.canptl(last_sunday, None, &all, &system).await?;
        Ok(serde_json::to_vec(&report)?)
    })
    .await?;
    report(
        &format!("CANPTL return (last Sunday, {last_sunday})"),
        times,
    );
    let week_ago = ViewAt {
        as_of: Some(today - chrono::Days::new(7)),
        ..ViewAt::default()
    };
    let known_week_ago = ViewAt {
        known_at: Some(chrono::Utc::now() - chrono::Duration::days(7)),
        ..ViewAt::default()
    };
    for (label, at, sort) in [
        (
            "PTL page as of a week ago",
            week_ago.clone(),
            PtlSort::DaysWaited,
        ),
        (
            "PTL page as known a week ago",
            known_week_ago.clone(),
            PtlSort::DaysWaited,
        ),
        (
            "PTL page as of a week ago, by breach risk",
            week_ago.clone(),
            PtlSort::BreachRisk,
        ),
    ] {
        let past = PtlQuery {
            at,
            sort,
            limit: Some(100),
            ..PtlQuery::default()
        };
        let times = timed(3, async || {
            let page = app.ptl(&past, &system).await?;
            Ok(serde_json::to_vec(&page)?)
        })
        .await?;
        report(label, times);
    }
    // Dates whose states no pathway keeps with today's (earlier states are
    // kept for last Sunday and a week ago): a PTL page and the CWT
    // submission, one view of each date (decision 204); and dates three to
    // five weeks back, which move the states kept when replaced (decision
    // 206).
    for days_back in [[11, 12, 13], [20, 27, 34]] {
        let mut pages = Vec::new();
        let mut submissions = Vec::new();
        for back in days_back {
            let at = ViewAt {
                as_of: Some(today - chrono::Days::new(back)),
                ..ViewAt::default()
            };
            let query = PtlQuery {
                at: at.clone(),
                limit: Some(100),
                ..PtlQuery::default()
            };
            let t = Instant::now();
            std::hint::black_box(serde_json::to_vec(&app.ptl(&query, &system).await?)?);
            pages.push(t.elapsed());
            let t = Instant::now();
            std::hint::black_box(past_aggregate(&app, &at, PastAggregate::CwtCsv, &system).await?);
            submissions.push(t.elapsed());
        }
        let [a, b, c] = days_back;
        report(
            &format!("PTL page as of {a}, {b}, {c} days ago (one view each)"),
            pages,
        );
        report(
            &format!(
                "CWT submission as CSV (its month) as of {a}, {b}, {c} days ago (one view each)"
            ),
            submissions,
        );
    }
    // The aggregate views of the month a week ago, as of a week ago and as
    // known a week ago (SPEC 7's past target covers them too).
    for (label, at) in [
        ("as of a week ago", &week_ago),
        ("as known a week ago", &known_week_ago),
    ] {
        for view in PastAggregate::TIMED {
            let times = timed(3, async || past_aggregate(&app, at, view, &system).await).await?;
            report(&format!("{} {label}", view.label()), times);
        }
    }
    // The standards page of a past date as the dashboard asks for it:
    // each standard for the date's month and over the six months to it,
    // at once; and the page as known at a past moment. The first view of
    // a date (or moment) counts its cells and keeps them (decisions 202,
    // 203); the page asked again sums them. Dates and moments no other
    // row asks for.
    let days_back = [6, 8, 10];
    let pages = [
        (
            "as of",
            days_back.map(|back| ViewAt {
                as_of: Some(today - chrono::Days::new(back)),
                ..ViewAt::default()
            }),
        ),
        (
            "as known at",
            days_back.map(|back| ViewAt {
                known_at: Some(chrono::Utc::now() - chrono::Duration::days(back as i64)),
                ..ViewAt::default()
            }),
        ),
    ];
    for (how, ats) in pages {
        for label in ["first view of the date", "again"] {
            let mut times = Vec::new();
            for at in &ats {
                let t = Instant::now();
                std::hint::black_box(standards_page(&app, at).await?);
                times.push(t.elapsed());
            }
            report(
                &format!(
                    "standards page {how} 6, 8, 10 days ago, 3 standards × 6 months at once ({label})"
                ),
                times,
            );
        }
    }
    let (kept_dates, kept_cells, kept_bytes) = app.projection().kept_days();
    println!(
        "cells kept as of past dates and moments: {kept_dates} dates, {kept_cells} cells, {:.0} KiB",
        kept_bytes as f64 / 1024.0
    );
    // The same past views with every history read back (the full
    // re-evaluation, as before issue 22): its time, and whether the fast
    // answers equal it, whole (every PTL row, the return, the month's
    // aggregates).
    let four_weeks_ago = ViewAt {
        as_of: Some(today - chrono::Days::new(28)),
        ..ViewAt::default()
    };
    for (label, at) in [
        ("as of a week ago", week_ago),
        ("as known a week ago", known_week_ago),
        ("as of four weeks ago", four_weeks_ago),
    ] {
        let every_row = PtlQuery {
            at: at.clone(),
            limit: None,
            ..PtlQuery::default()
        };
        let answers = async || -> anyhow::Result<(Vec<u8>, Duration)> {
            let t = Instant::now();
            let page = serde_json::to_vec(&app.ptl(&every_row, &system).await?)?;
            let canptl = app.canptl(last_sunday, at.known_at, &all, &system).await?;
            let mut answer = [page, serde_json::to_vec(&canptl)?].concat();
            for view in PastAggregate::ALL {
                for piece in past_aggregate(&app, &at, view, &system).await? {
                    answer.extend(piece);
                }
            }
            Ok((answer, t.elapsed()))
        };
        let (fast, fast_took) = answers().await?;
        app.set_past_views_read_all(true);
        let full = answers().await;
        app.set_past_views_read_all(false);
        let (full, full_took) = full?;
        println!(
            "every PTL row, last Sunday's CANPTL and the month's aggregates {label}: fast {:.2}s, full re-evaluation {:.2}s, equal: {}",
            fast_took.as_secs_f64(),
            full_took.as_secs_f64(),
            if fast == full { "yes" } else { "NO" }
        );
    }

    // Pathway views.
    let ids = app.projection().some_pathway_ids(10_000);
    let mut times = Vec::with_capacity(ids.len());
    for id in &ids {
        let t = Instant::now();
        let view = app
            .pathway(
                id,
                &PathwayQuery::default(),
                &openptl_app::access::Principal::system("bench"),
            )
            .await?;
        std::hint::black_box(serde_json::to_vec(&view)?);
        times.push(t.elapsed());
    }
    report("pathway view", times);

    // An append is visible in the PTL when its POST returns (the append waits
    // for the projection); measure that round trip for single notes.
    if let Some((_, bytes, used)) = app.projection().replaced_states() {
        println!(
            "states views took from the replaced states kept: {used} ({:.0} MiB on disk)",
            bytes as f64 / 1048576.0
        );
    }
    let mut times = Vec::new();
    // Spread over the pathways, oldest to newest, as the ids are.
    let spread = (ids.len() / 500).max(1);
    for (n, id) in ids.iter().step_by(spread).take(500).enumerate() {
        times.push(append_note(&app, id, today, &format!("bench note {n}")).await?);
    }
    report("append → visible in every view", times);
    // The same while the forecasts are refreshed (every ten minutes in the
    // background: every state's clocks, today's model, the month ends).
    let refresh = {
        let app = app.clone();
        tokio::spawn(async move { app.refresh_forecasts().await })
    };
    let mut times = Vec::new();
    let mut n = 0;
    while !refresh.is_finished() {
        let id = &ids[n % ids.len()];
        let text = format!("bench note during refresh {n}");
        times.push(append_note(&app, id, today, &text).await?);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refresh.await??;
    report("append → visible, while the forecasts refresh", times);

    // Restart from a snapshot: write one, stop, open again.
    let t = Instant::now();
    let written = app
        .write_snapshot()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no snapshot was written"))?;
    println!(
        "snapshot written: {} pathways at position {}, {:.0} MiB in {:.2}s",
        written.pathways,
        written.position,
        written.bytes as f64 / 1048576.0,
        t.elapsed().as_secs_f64()
    );
    drop(app);
    drop(log);
    // The runner notices the App is gone within a second and lets the log go.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (log, app, opened, serving) = restart(&dir, &snapshot, Arc::new(SystemClock)).await?;
    anyhow::ensure!(
        app.projection().restored_at() == Some(written.position),
        "the snapshot was not used: {}",
        app.projection()
            .snapshot_refused()
            .unwrap_or_else(|| format!("restored at {:?}", app.projection().restored_at()))
    );
    println!(
        "restart from the snapshot: log open {:.2}s, serving after {:.2}s ({} events)",
        opened.as_secs_f64(),
        serving.as_secs_f64(),
        log.head(),
    );
    drop(app);
    if !keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

/// Waits (up to 5 minutes) for the log's background check after a start
/// (hash chain of sealed segments, event-id filter; decision 67) to finish,
/// so that memory is measured with the filter filled and views are timed
/// without the check beside them. Returns how long it waited.
async fn background_check_done(log: &dyn EventLog) -> Duration {
    let started = Instant::now();
    log.start_up_done();
    while log
        .stats()
        .verified_position
        .is_some_and(|p| p < log.head())
        && started.elapsed() < Duration::from_secs(300)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// Opens the log in `dir` and a service on it (restoring `snapshot` when it
/// fits), and waits until it serves: the log, the service, and how long the
/// log took to open and the service to be ready.
async fn restart(
    dir: &Path,
    snapshot: &Path,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<(Arc<dyn EventLog>, Arc<App>, Duration, Duration)> {
    let started = Instant::now();
    // As `serve` does: the snapshot is read while the log opens.
    let preload = openptl_app::projection::SnapshotPreload::start(
        snapshot.to_path_buf(),
        RulesConfig::defaults(),
    );
    let log: Arc<dyn EventLog> = Arc::new(SegmentLog::open(dir)?);
    let opened = started.elapsed();
    let app = Arc::new(App::open_preloaded(
        log.clone(),
        RulesConfig::defaults(),
        clock,
        Some(snapshot.to_path_buf()),
        preload,
    ));
    while !app.caught_up(Duration::from_secs(60)).await {}
    Ok((log, app, opened, started.elapsed()))
}

/// `runs` timings of `f` (its output, the serialised view, is kept alive
/// until timed so the work cannot be optimised away).
/// Appends a tracking note to `id` and waits until every view shows it:
/// how long that took. (Closed pathways refuse nothing for notes; any
/// refusal is a bench bug.)
async fn append_note(
    app: &App,
    id: &str,
    today: chrono::NaiveDate,
    text: &str,
) -> anyhow::Result<Duration> {
    let note = json!({
        "pathway_id": id, "type": "tracking_note_added", "occurred_on": today.to_string(),
        "data": { "text": text }
    });
    let t = Instant::now();
    app.append(
        vec![note],
        &openptl_app::access::Principal::system("bench"),
        false,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t.elapsed())
}

/// An aggregate view of a past month, for [`past_aggregate`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum PastAggregate {
    Standards,
    Milestones,
    Fit,
    /// The CWT submission's lines, as JSON (`format=json`).
    Cwt,
    /// The same as CSV, as `GET /v1/returns/cwt` serves it by default.
    CwtCsv,
    /// Every FDS clock behind the month's figures (decision 187).
    Clocks,
    /// The same of lower GI pathways only (decision 213).
    SiteClocks,
    /// Every lower GI pathway behind the diagnosis milestone's figures,
    /// of every referral month and status (decision 190): every state
    /// read.
    MilestonePathways,
}

impl PastAggregate {
    /// The views compared with the full re-evaluation (the CSV is made
    /// from the same lines as the JSON).
    const ALL: [PastAggregate; 4] = [
        PastAggregate::Standards,
        PastAggregate::Milestones,
        PastAggregate::Fit,
        PastAggregate::Cwt,
    ];
    /// The views timed.
    const TIMED: [PastAggregate; 8] = [
        PastAggregate::Standards,
        PastAggregate::Milestones,
        PastAggregate::Fit,
        PastAggregate::Cwt,
        PastAggregate::CwtCsv,
        PastAggregate::Clocks,
        PastAggregate::SiteClocks,
        PastAggregate::MilestonePathways,
    ];

    fn label(self) -> &'static str {
        match self {
            PastAggregate::Standards => "standards view (62-day, its month)",
            PastAggregate::Milestones => "milestones view (every pathway)",
            PastAggregate::Fit => "FIT view (its month)",
            PastAggregate::Cwt => "CWT extract (its month)",
            PastAggregate::CwtCsv => "CWT submission as CSV (its month)",
            PastAggregate::Clocks => "FDS clocks behind the figure (its month, every clock)",
            PastAggregate::SiteClocks => {
                "FDS clocks behind the figure (its month, every lower GI clock)"
            }
            PastAggregate::MilestonePathways => {
                "lower GI pathways behind the diagnosis milestone (every month and status)"
            }
        }
    }
}

/// `view` of the month of `at`'s date, all trusts, as JSON (or CSV), in
/// the pieces the service would send.
async fn past_aggregate(
    app: &App,
    at: &openptl_app::ViewAt,
    view: PastAggregate,
    system: &openptl_app::access::Principal,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let all = openptl_app::TrustFilter::default();
    let month = Period::of(app.as_of(at.as_of, at.known_at));
    // The CWT submission as JSON and the lists are sent in pieces; every
    // other view, in one.
    let whole = match view {
        PastAggregate::Cwt => {
            let lines = app.cwt(at, month, &all, system).await?.0;
            return Ok(openptl_http::cwt_json(month, lines)?);
        }
        PastAggregate::Standards => serde_json::to_vec(
            &app.standards(
                at,
                openptl_rules::ClockKind::D62,
                Some(month),
                &all,
                None,
                system,
            )
            .await?
            .0,
        )?,
        PastAggregate::Milestones => {
            serde_json::to_vec(&app.milestones(at, None, &all, None, system).await?.0)?
        }
        PastAggregate::Fit => serde_json::to_vec(&app.fit(at, Some(month), &all, system).await?.0)?,
        PastAggregate::CwtCsv => {
            openptl_http::cwt_csv(app.cwt(at, month, &all, system).await?.0).into_bytes()
        }
        PastAggregate::Clocks | PastAggregate::SiteClocks => {
            let filter = openptl_rules::counted::ClockFilter {
                tumour_site: (view == PastAggregate::SiteClocks)
                    .then_some(openptl_rules::TumourSite::LowerGi),
                ..openptl_rules::counted::ClockFilter::default()
            };
            let fds = openptl_rules::ClockKind::Fds;
            let whole = openptl_app::Page::default();
            let clocks = app.standard_clocks(at, fds, Some(month), &all, filter, system, whole);
            return Ok(openptl_http::list_json(
                serde_json::Map::new(),
                clocks.await?.1,
            )?);
        }
        PastAggregate::MilestonePathways => {
            let query = openptl_app::MilestoneQuery {
                at: at.clone(),
                period: None,
                trusts: all,
                tumour_site: openptl_rules::TumourSite::LowerGi,
                milestone: "diagnosis_communicated".into(),
                status: None,
            };
            let lines = app
                .milestone_pathways(&query, system, openptl_app::Page::default())
                .await?
                .0;
            return Ok(openptl_http::list_json(serde_json::Map::new(), lines)?);
        }
    };
    Ok(vec![whole])
}

/// The standards page at `at` as the dashboard asks for it
/// (`renderStandards` in app.js): each standard for the date's month and
/// for each of the six months to it, every request at once, a `busy`
/// answer waited out as the dashboard waits it out.
async fn standards_page(app: &Arc<App>, at: &openptl_app::ViewAt) -> anyhow::Result<Vec<u8>> {
    let month = Period::of(app.as_of(at.as_of, at.known_at));
    let mut months = vec![month];
    while months.len() < 6 {
        let first = months[months.len() - 1].first_day();
        months.push(Period::of(first - chrono::Days::new(1)));
    }
    let mut asked = tokio::task::JoinSet::new();
    for standard in openptl_rules::ClockKind::ALL {
        for period in std::iter::once(month).chain(months.iter().copied()) {
            let (app, standard, at) = (app.clone(), *standard, at.clone());
            asked.spawn(async move {
                let system = openptl_app::access::Principal::system("bench");
                let all = openptl_app::TrustFilter::default();
                // A `busy` answer waited out as app.js waits it out
                // (Retry-After, at most 10 s, 5 times).
                let mut attempt = 0;
                let (report, _) = loop {
                    let asked = app.standards(&at, standard, Some(period), &all, None, &system);
                    match asked.await {
                        Err(openptl_app::AppError::Busy { retry_after }) if attempt < 5 => {
                            attempt += 1;
                            tracing::info!(attempt, "standards page: busy, waited out");
                            tokio::time::sleep(Duration::from_secs(retry_after.clamp(1, 10))).await;
                        }
                        answer => break answer?,
                    }
                };
                anyhow::Ok(serde_json::to_vec(&report)?)
            });
        }
    }
    let mut page = Vec::new();
    while let Some(answer) = asked.join_next().await {
        page.extend(answer??);
    }
    Ok(page)
}

async fn timed<T>(
    runs: usize,
    mut f: impl AsyncFnMut() -> anyhow::Result<T>,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for run in 1..=runs {
        let t = Instant::now();
        std::hint::black_box(f().await?);
        let took = t.elapsed();
        // Which run was the slow one (the report gives only percentiles).
        tracing::debug!(run, ms = took.as_secs_f64() * 1e3, "a timed run");
        times.push(took);
    }
    Ok(times)
}
