//! The append benchmark: the HTTP API on the embedded log (and, with
//! `--store`, on PostgreSQL beside it): set-up referrals, batched appends,
//! single-event appends from many clients, reading the whole log back and a
//! projection rebuilt from position 0.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openptl_app::{App, SystemClock};
use openptl_log::{EventLog, SegmentLog};
use openptl_rules::RulesConfig;
use serde_json::json;

use super::client::{drive, BENCH_TOKEN};
use super::data::{note, referral_batches};
use super::disk::raw_fdatasync;
use super::report::percentile;
use super::BenchOptions;

/// What one run of the append benchmark measured.
struct Figures {
    batched: f64,
    single: f64,
    single_p99_ms: f64,
    read_all: f64,
    /// Events per second a fresh projection folds from this log.
    rebuild: f64,
}

/// The append benchmark on the embedded log, then (with `store`) the same on
/// PostgreSQL, with the ratio between them.
pub async fn run(options: BenchOptions, store: Option<String>) -> anyhow::Result<()> {
    let embedded = run_embedded(&options).await?;
    let Some(url) = store else {
        return Ok(());
    };
    const SCHEMA: &str = "openptl_bench";
    openptl_log::PgLog::drop_schema(&url, SCHEMA).await?;
    let log: Arc<dyn EventLog> = Arc::new(openptl_log::PgLog::open_in_schema(&url, SCHEMA).await?);
    println!("\nthe same on PostgreSQL (schema {SCHEMA}):");
    let pg = run_on(log, &options).await?;
    println!(
        "PostgreSQL / embedded: batched {:.2}×, single {:.2}× (p99 {:.1} vs {:.1} ms), read all {:.2}×, rebuild {:.2}×",
        pg.batched / embedded.batched,
        pg.single / embedded.single,
        pg.single_p99_ms,
        embedded.single_p99_ms,
        pg.read_all / embedded.read_all,
        pg.rebuild / embedded.rebuild
    );
    openptl_log::PgLog::drop_schema(&url, SCHEMA).await?;
    Ok(())
}

async fn run_embedded(options: &BenchOptions) -> anyhow::Result<Figures> {
    let dir = std::env::temp_dir().join(format!("openptl-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let log = Arc::new(SegmentLog::open(&dir)?);
    println!("openptl bench: data in {}", dir.display());
    let figures = run_on(log.clone(), options).await?;
    let head = log.head();
    let on_disk: u64 = std::fs::read_dir(dir.join("segments"))?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let per_event = on_disk / head.max(1);
    println!("log size: {on_disk} bytes for {head} events ({per_event} bytes/event)");

    // The disk's own limit for the same shapes of write.
    let (syncs, mbps) = raw_fdatasync(&dir, 500, per_event as usize * options.batch_events)?;
    println!(
        "disk limit, {}-byte writes (one batch) + fdatasync: {syncs:.0} syncs/s = {:.0} events/s ({mbps:.0} MB/s)",
        per_event as usize * options.batch_events,
        syncs * options.batch_events as f64
    );
    let (syncs, _) = raw_fdatasync(&dir, 2000, per_event as usize)?;
    println!(
        "disk limit, {per_event}-byte writes (one event) + fdatasync: {syncs:.0} syncs/s (one event per sync would cap single appends here)"
    );
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(figures)
}

/// The HTTP append benchmark on `log`.
async fn run_on(log: Arc<dyn EventLog>, options: &BenchOptions) -> anyhow::Result<Figures> {
    // The benchmark measures the write path, not the per-token rate limit.
    let app = Arc::new(
        App::new(log.clone(), RulesConfig::defaults(), Arc::new(SystemClock)).with_rate_limit(0.0),
    );
    app.tokens().create_with_secret(
        openptl_app::tokens::NewToken {
            role: openptl_app::access::Role::Admin,
            trusts: Vec::new(),
            alliance: None,
            label: Some("bench".into()),
            expires_at: None,
        },
        chrono::Utc::now(),
        Some(BENCH_TOKEN),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    // The production listener (its bounds at their defaults), not axum's.
    let server = tokio::spawn(openptl_http::serve(
        listener,
        openptl_http::router(app),
        openptl_http::ServeLimits::default(),
        std::future::pending(),
    ));
    println!("server on {addr}");

    // Set-up: one referral per pathway, in batches (timed too).
    let referrals = referral_batches(options.pathways, options.batch_events);
    let (elapsed, _) = drive(&addr, options.clients.min(4), referrals).await?;
    println!(
        "set-up: {} referrals in {:.2}s",
        options.pathways,
        elapsed.as_secs_f64()
    );

    let mut n = 0usize;
    let mut next_note = || {
        n += 1;
        note(n % options.pathways, n)
    };
    // Batched appends: each request carries `batch_events` notes for different pathways.
    let batches: Vec<String> = (0..options.batch_requests)
        .map(|_| {
            json!({ "events": (0..options.batch_events).map(|_| next_note()).collect::<Vec<_>>() })
                .to_string()
        })
        .collect();
    let batch_bytes = batches.first().map_or(0, String::len);
    let clients = options.clients.min(8);
    let (elapsed, lat) = drive(&addr, clients, batches).await?;
    let events = options.batch_requests * options.batch_events;
    let batched = events as f64 / elapsed.as_secs_f64();
    println!(
        "batched appends: {events} events in {} requests of {} from {clients} clients: {:.0} events/s; request p50 {:.1} ms, p99 {:.1} ms",
        options.batch_requests,
        options.batch_events,
        events as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );

    // Single-event appends from many concurrent clients (group commit at work).
    let singles: Vec<String> = (0..options.single_requests)
        .map(|_| next_note().to_string())
        .collect();
    let single_bytes = singles.first().map_or(0, String::len);
    let (elapsed, lat) = drive(&addr, options.clients, singles).await?;
    let single = options.single_requests as f64 / elapsed.as_secs_f64();
    let single_p99_ms = percentile(&lat, 0.99).as_secs_f64() * 1e3;
    println!(
        "single-event appends: {} POSTs from {} clients: {:.0} events/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        options.single_requests,
        options.clients,
        options.single_requests as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );

    // Reading the whole log back, in pages, as a projection rebuild would.
    let head = log.head();
    let started = Instant::now();
    let mut from = 1;
    while from <= head {
        let page = log.read_all(from, 10_000).await?;
        from = page.last().map_or(head + 1, |r| r.position + 1);
    }
    let read_all = head as f64 / started.elapsed().as_secs_f64();
    println!(
        "read all: {head} events in {:.2}s: {read_all:.0} events/s",
        started.elapsed().as_secs_f64(),
    );
    // A projection rebuilt from position 0 on this log (a node's start).
    let started = Instant::now();
    let fresh = App::new(log.clone(), RulesConfig::defaults(), Arc::new(SystemClock));
    while !fresh.caught_up(Duration::from_secs(60)).await {}
    let rebuild = head as f64 / started.elapsed().as_secs_f64();
    println!(
        "projection rebuilt from position 0: {head} events in {:.2}s: {rebuild:.0} events/s",
        started.elapsed().as_secs_f64(),
    );
    let _ = (batch_bytes, single_bytes);
    server.abort();
    Ok(Figures {
        batched,
        single,
        single_p99_ms,
        read_all,
        rebuild,
    })
}
