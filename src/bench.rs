//! `openptl bench`: measures durable appends through the real HTTP API on
//! this machine, beside the disk's own limit (sequential writes with one
//! fdatasync each), and reading the whole log back. Prints figures; asserts
//! nothing (SPEC 7: performance is measured, not asserted in tests).

use std::future::IntoFuture;
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
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
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

pub async fn run(options: BenchOptions) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("openptl-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let log = Arc::new(SegmentLog::open(&dir)?);
    let app = Arc::new(App::new(
        log.clone() as Arc<dyn EventLog>,
        RulesConfig::defaults(),
        Arc::new(SystemClock),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?.to_string();
    let server = tokio::spawn(axum::serve(listener, openptl_http::router(app)).into_future());
    println!("openptl bench: data in {}, server on {addr}", dir.display());

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
    println!(
        "read all: {head} events in {:.2}s: {:.0} events/s",
        started.elapsed().as_secs_f64(),
        head as f64 / started.elapsed().as_secs_f64()
    );

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
    let _ = (batch_bytes, single_bytes);
    server.abort();
    drop(log);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
