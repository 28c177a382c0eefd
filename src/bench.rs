//! `openptl bench`: measures durable appends through the real HTTP API on
//! this machine, beside the disk's own limit (sequential writes with one
//! fdatasync each), and reading the whole log back. Prints figures; asserts
//! nothing (SPEC 7: performance is measured, not asserted in tests).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use openptl_app::{App, SystemClock};
use openptl_log::{EventLog, SegmentLog};
use openptl_rules::RulesConfig;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The admin token the benchmark's in-memory token store accepts.
const BENCH_TOKEN: &str = "openptl-bench-admin-token";

pub struct BenchOptions {
    pub pathways: usize,
    pub batch_events: usize,
    pub batch_requests: usize,
    pub single_requests: usize,
    pub clients: usize,
}

/// A minimal keep-alive HTTP/1.1 client: just enough for the benchmark.
struct Connection {
    stream: BufReader<TcpStream>,
    host: String,
}

impl Connection {
    async fn open(addr: &str) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            stream: BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    async fn post(&mut self, path: &str, body: &str) -> anyhow::Result<u16> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {BENCH_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.stream.get_mut().write_all(head.as_bytes()).await?;
        self.stream.get_mut().write_all(body.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line.get(9..12).context("no status line")?.parse()?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse()?;
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

fn note(pathway: usize, n: usize) -> serde_json::Value {
    json!({
        "pathway_id": format!("BENCH-{pathway:06}"), "type": "tracking_note_added", "occurred_on": "2025-03-10",
        "data": { "text": format!("Benchmark note {n}: awaiting histology"), "next_action": "Chase pathology", "owner": "MDT coordinator" }
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs `requests` POSTs from `clients` connections; returns (elapsed, sorted latencies).
async fn drive(
    addr: &str,
    clients: usize,
    bodies: Vec<String>,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
    let bodies = Arc::new(bodies);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (bodies, next, addr) = (bodies.clone(), next.clone(), addr.to_string());
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(&addr).await?;
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let t = Instant::now();
                let status = conn.post("/v1/events", body).await?;
                latencies.push(t.elapsed());
                anyhow::ensure!(status == 201, "append answered {status}");
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort();
    Ok((elapsed, all))
}

/// The disk's limit: `writes` sequential writes of `bytes` each, one fdatasync per write.
fn raw_fdatasync(dir: &Path, writes: usize, bytes: usize) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("raw-fdatasync.bin");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let buffer = vec![0x5au8; bytes];
    let started = Instant::now();
    for _ in 0..writes {
        file.write_all(&buffer)?;
        file.sync_data()?;
    }
    let secs = started.elapsed().as_secs_f64();
    std::fs::remove_file(&path)?;
    Ok((writes as f64 / secs, (writes * bytes) as f64 / secs / 1e6))
}

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
    app.tokens.create_with_secret(
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
    let referrals: Vec<String> = (0..options.pathways)
        .collect::<Vec<_>>()
        .chunks(options.batch_events.max(1))
        .map(|chunk| {
            let events: Vec<_> = chunk
                .iter()
                .map(|p| json!({
                    "pathway_id": format!("BENCH-{p:06}"), "type": "referral_received", "occurred_on": "2025-03-03",
                    "data": { "nhs_number": "9434765919", "trust": "RXH", "tumour_site": "lower_gi", "route": "urgent_suspected_cancer" }
                }))
                .collect();
            json!({ "events": events }).to_string()
        })
        .collect();
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

/// Resident memory of this process in bytes (Linux), for per-pathway figures.
/// Opens the log in `dir` and a service on it (restoring `snapshot` when it
/// fits), and waits until it serves: the log, the service, and how long the
/// log took to open and the service to be ready.
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

async fn restart(
    dir: &std::path::Path,
    snapshot: &std::path::Path,
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
        Arc::new(SystemClock),
        Some(snapshot.to_path_buf()),
        preload,
    ));
    while !app.caught_up(Duration::from_secs(60)).await {}
    Ok((log, app, opened, started.elapsed()))
}

/// Hands freed heap pages back to the system (the allocator keeps them a while),
/// so resident memory shows what is live rather than what was once used.
fn trim_heap() {
    extern "C" {
        fn mi_collect(force: bool);
    }
    // SAFETY: mi_collect only returns free pages to the system; it is safe
    // to call at any time from any thread.
    unsafe {
        mi_collect(true);
    }
}

fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `runs` timings of `f` (its output, the serialised view, is kept alive
/// until timed so the work cannot be optimised away).
async fn timed(
    runs: usize,
    mut f: impl AsyncFnMut() -> anyhow::Result<Vec<u8>>,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        std::hint::black_box(f().await?);
        times.push(t.elapsed());
    }
    Ok(times)
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    println!(
        "{label}: {} runs, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        times.len(),
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

/// `openptl bench --views`: the projection and view figures of SPEC 7 on a
/// synthetic alliance of `pathways` pathways written straight into a fresh
/// log (valid by construction, so the write skips the rules to save time).
pub async fn views(
    pathways: usize,
    seed: u64,
    data_dir: Option<std::path::PathBuf>,
    referral_days: u64,
) -> anyhow::Result<()> {
    use openptl_app::{PathwayQuery, PtlQuery, PtlSort, TrustFilter, ViewAt, Worklist};
    use openptl_log::NewRecord;
    use openptl_rules::NewEvent;

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

    // Write the alliance, a slice of pathways at a time.
    let started = Instant::now();
    if reuse {
        println!("reusing the alliance already in {}", dir.display());
    } else {
        let log = SegmentLog::open(&dir)?;
        const SLICE: usize = 20_000;
        let mut first = 0;
        while first < pathways {
            let end = (first + SLICE).min(pathways);
            let events = crate::demo::generate_range_over(first..end, seed, today, referral_days);
            let records: Vec<NewRecord> = events
                .into_iter()
                .map(|envelope| {
                    let event =
                        NewEvent::from_json(envelope).map_err(|e| anyhow::anyhow!("{e}"))?;
                    Ok(NewRecord {
                        stream_id: event.pathway_id.as_str().to_string(),
                        event_id: event.event_id.unwrap_or_else(uuid::Uuid::new_v4),
                        event_type: event.data.event_type().as_str().to_string(),
                        schema_version: event.data.schema_version(),
                        actor: "bench-loader".to_string(),
                        payload: event.data.encode_payload(event.occurred_on),
                        expected_version: None,
                    })
                })
                .collect::<anyhow::Result<_>>()?;
            for chunk in records.chunks(5000) {
                log.append(chunk.to_vec()).await?;
            }
            first = end;
        }
        println!(
            "written: {} events in {:.1}s ({:.0} events/s straight into the log)",
            log.head(),
            started.elapsed().as_secs_f64(),
            log.head() as f64 / started.elapsed().as_secs_f64()
        );
    }

    // Restart without a snapshot: open the log, then fold every event into
    // the projection.
    let snapshot = dir.join("projection.snapshot");
    if snapshot.exists() {
        // A snapshot left by an earlier run (`--data-dir`): restore from it in
        // a fresh process, where resident memory is the projection's own.
        let before = resident_bytes();
        let (log, app, opened, serving) = restart(&dir, &snapshot).await?;
        let restored = app.projection.restored_at().is_some();
        let open = app.projection.read().ptl.len();
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
    let (log, app, opened, serving) = restart(&dir, &snapshot).await?;
    let events = log.head();
    let (total, open) = {
        let data = app.projection.read();
        (data.pathways.len(), data.ptl.len())
    };
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
    let times = timed(20, async || {
        let (report, _) = app.milestones(&now, None, &all, None, &system).await?;
        Ok(serde_json::to_vec(&report)?)
    })
    .await?;
    report("milestones view (every pathway, all trusts)", times);
    let times = timed(20, async || {
        let (lines, _) = app.cwt(&now, month, &all, &system).await?;
        Ok(serde_json::to_vec(&lines)?)
    })
    .await?;
    report("CWT extract (this month)", times);

    let t = Instant::now();
    let past = PtlQuery {
        at: ViewAt {
            as_of: Some(today - chrono::Days::new(7)),
            ..ViewAt::default()
        },
        limit: Some(100),
        ..PtlQuery::default()
    };
    app.ptl(&past, &openptl_app::access::Principal::system("bench"))
        .await?;
    println!(
        "PTL page as of a week ago (every pathway re-evaluated): {:.0} ms",
        t.elapsed().as_secs_f64() * 1e3
    );

    // Pathway views.
    let ids: Vec<String> = {
        let data = app.projection.read();
        data.pathways
            .keys()
            .take(10_000)
            .map(|k| k.to_string())
            .collect()
    };
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
    let mut times = Vec::new();
    for (n, id) in ids.iter().take(500).enumerate() {
        let note = json!({
            "pathway_id": id, "type": "tracking_note_added", "occurred_on": today.to_string(),
            "data": { "text": format!("bench note {n}") }
        });
        let t = Instant::now();
        let out = app
            .append(
                vec![note],
                &openptl_app::access::Principal::system("bench"),
                false,
            )
            .await;
        times.push(t.elapsed());
        // Closed pathways refuse nothing for notes; any refusal is a bench bug.
        out.map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    report("append → visible in every view", times);

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
    let (log, app, opened, serving) = restart(&dir, &snapshot).await?;
    anyhow::ensure!(
        app.projection.restored_at() == Some(written.position),
        "the snapshot was not used: {}",
        app.projection
            .snapshot_refused()
            .unwrap_or_else(|| format!("restored at {:?}", app.projection.restored_at()))
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
