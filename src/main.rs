//! The `openptl` binary: one executable for the service and its tools
//! (SPEC 10). Parsing options and wiring components is all it does.

mod bench;
mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use openptl_app::{App, SystemClock};
use openptl_log::segment::{self, SegmentLog};
use openptl_log::EventLog;
use openptl_rules::RulesConfig;

#[derive(Parser)]
#[command(
    name = "openptl",
    version,
    about = "Cancer pathway tracking: the single PTL, FDS/31/62-day clocks, BPTP milestones"
)]
struct Cli {
    /// Rules configuration (targets, RAG bands, milestone templates); the shipped defaults when absent.
    #[arg(long, global = true, env = "OPENPTL_RULES")]
    rules: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "OPENPTL_LOG_JSON")]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// Where the event log lives.
        #[arg(long, env = "OPENPTL_DATA_DIR", default_value = "./openptl-data")]
        data_dir: PathBuf,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, env = "OPENPTL_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Load the seeded synthetic alliance first (into an empty log).
        #[arg(long, env = "OPENPTL_DEMO")]
        demo: bool,
        /// Pathways in the demo data set.
        #[arg(long, env = "OPENPTL_DEMO_PATHWAYS", default_value_t = 5000)]
        demo_pathways: usize,
    },
    /// Re-read every segment (CRCs, positions, stream versions, hash chain) and
    /// check the index agrees. Exit status 0 only when the log is sound.
    Verify {
        #[arg(long, env = "OPENPTL_DATA_DIR", default_value = "./openptl-data")]
        data_dir: PathBuf,
    },
    /// Delete the sled index and rebuild it from the segments (the service must be stopped).
    RebuildIndex {
        #[arg(long, env = "OPENPTL_DATA_DIR", default_value = "./openptl-data")]
        data_dir: PathBuf,
    },
    /// Write the whole log as NDJSON (one event with its metadata per line) to stdout.
    /// The service must be stopped.
    Export {
        #[arg(long, env = "OPENPTL_DATA_DIR", default_value = "./openptl-data")]
        data_dir: PathBuf,
    },
    /// Append NDJSON event envelopes (SPEC 3.1; an export's metadata fields are
    /// ignored) through the same validation as the API. The service must be stopped.
    Import {
        /// The NDJSON file (`-` for standard input).
        file: PathBuf,
        #[arg(long, env = "OPENPTL_DATA_DIR", default_value = "./openptl-data")]
        data_dir: PathBuf,
        /// Events per atomic batch.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
    /// Measure durable appends through the HTTP API, reads, and the disk's own limit.
    Bench {
        #[arg(long, default_value_t = 10_000)]
        pathways: usize,
        #[arg(long, default_value_t = 1000)]
        batch_events: usize,
        #[arg(long, default_value_t = 100)]
        batch_requests: usize,
        #[arg(long, default_value_t = 20_000)]
        single_requests: usize,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Measure the projection and views instead (restart, PTL pages,
        /// pathway views, memory) on a synthetic alliance of `--pathways`.
        #[arg(long)]
        views: bool,
    },
    /// Write synthetic events (NDJSON envelopes) to stdout.
    Generate {
        #[arg(long, default_value_t = 1000)]
        pathways: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The date the data set ends on (default: today).
        #[arg(long)]
        as_of: Option<String>,
    },
}

fn rules(path: Option<&PathBuf>) -> anyhow::Result<RulesConfig> {
    match path {
        None => Ok(RulesConfig::defaults()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            RulesConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OPENPTL_LOG")
        .unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let config = rules(cli.rules.as_ref())?;
    match cli.command {
        Command::Serve {
            data_dir,
            listen,
            demo,
            demo_pathways,
        } => serve(config, data_dir, listen, demo.then_some(demo_pathways)).await,
        Command::Verify { data_dir } => {
            let report = segment::verify(&data_dir)?;
            println!(
                "{} records in {} segments, {} pathways; CRCs, positions, versions and hash chain checked",
                report.records, report.segments, report.streams
            );
            for problem in &report.problems {
                println!("PROBLEM: {problem}");
            }
            if report.problems.is_empty() {
                println!("OK");
                Ok(())
            } else {
                anyhow::bail!("{} problems found", report.problems.len())
            }
        }
        Command::RebuildIndex { data_dir } => {
            let records = segment::rebuild_index(&data_dir)?;
            println!("index rebuilt: {records} records");
            Ok(())
        }
        Command::Bench {
            pathways,
            batch_events,
            batch_requests,
            single_requests,
            clients,
            views,
        } => {
            if views {
                return bench::views(pathways, 1).await;
            }
            bench::run(bench::BenchOptions {
                pathways,
                batch_events,
                batch_requests,
                single_requests,
                clients,
            })
            .await
        }
        Command::Export { data_dir } => export(&data_dir).await,
        Command::Import {
            file,
            data_dir,
            batch,
        } => import(config, &file, &data_dir, batch).await,
        Command::Generate {
            pathways,
            seed,
            as_of,
        } => {
            let as_of = match as_of {
                Some(d) => openptl_rules::date::parse(&d).context("--as-of must be YYYY-MM-DD")?,
                None => openptl_app::london_today(chrono::Utc::now()),
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for event in demo::generate(pathways, seed, as_of) {
                use std::io::Write;
                serde_json::to_writer(&mut out, &event)?;
                out.write_all(b"\n")?;
            }
            Ok(())
        }
    }
}

async fn serve(
    config: RulesConfig,
    data_dir: PathBuf,
    listen: SocketAddr,
    demo: Option<usize>,
) -> anyhow::Result<()> {
    let log: Arc<dyn EventLog> = Arc::new(
        SegmentLog::open(&data_dir)
            .with_context(|| format!("opening the event log in {}", data_dir.display()))?,
    );
    let app = Arc::new(App::new(log, config, Arc::new(SystemClock)));
    catch_up(&app).await?;
    if let Some(pathways) = demo {
        if app.log.head() == 0 {
            let loaded = demo::load(&app, pathways).await?;
            tracing::info!(events = loaded, pathways, "demo alliance loaded");
        }
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    // Scripts and tests read this line to find the port.
    println!("OpenPTL listening on http://{addr}");
    if demo.is_some() {
        println!("Demo data loaded. Try http://{addr}/v1/pathways/DEMO-000001 (no login needed in this build).");
    }
    axum::serve(listener, openptl_http::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM: stop accepting, let in-flight requests finish.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Folds the whole log into the projection before serving, so no view is
/// ever answered from half the data.
async fn catch_up(app: &App) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let head = app.log.head();
    loop {
        if app.caught_up(std::time::Duration::from_secs(5)).await {
            break;
        }
        if let Some(failure) = app.projection.failure() {
            anyhow::bail!("the projection cannot follow the log: {failure}");
        }
        tracing::info!(
            projected = app.projection.position(),
            head,
            "still building the projection"
        );
    }
    tracing::info!(
        events = head,
        millis = started.elapsed().as_millis() as u64,
        "projection built"
    );
    Ok(())
}

/// Opens the durable log on `data_dir` for a command-line tool.
fn open_log(data_dir: &std::path::Path) -> anyhow::Result<Arc<dyn EventLog>> {
    Ok(Arc::new(SegmentLog::open(data_dir).with_context(|| {
        format!(
            "opening the event log in {} (is the service running?)",
            data_dir.display()
        )
    })?))
}

/// Opens the log and the application (projection built) for a command-line tool.
async fn open_app(config: RulesConfig, data_dir: &std::path::Path) -> anyhow::Result<Arc<App>> {
    let app = Arc::new(App::new(open_log(data_dir)?, config, Arc::new(SystemClock)));
    catch_up(&app).await?;
    Ok(app)
}

async fn export(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::io::Write;
    let log = open_log(data_dir)?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut from = 1;
    loop {
        let page = log.read_all(from, 10_000).await?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        for record in page {
            let event_type = openptl_rules::EventType::parse(&record.event_type)
                .with_context(|| format!("position {}: unknown event type", record.position))?;
            let (occurred_on, data) = openptl_rules::EventData::decode_payload(
                event_type,
                record.schema_version,
                &record.payload,
            )?;
            let line = serde_json::json!({
                "position": record.position,
                "event_id": record.event_id,
                "pathway_id": record.stream_id,
                "version": record.version,
                "type": record.event_type,
                "schema_version": record.schema_version,
                "occurred_on": openptl_rules::date::format(occurred_on),
                "data": data.to_json(),
                "recorded_at": record.recorded_at,
                "actor": record.actor,
            });
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

async fn import(
    config: RulesConfig,
    file: &std::path::Path,
    data_dir: &std::path::Path,
    batch: usize,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let app = open_app(config, data_dir).await?;
    let reader: Box<dyn BufRead> = if file == std::path::Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?,
        ))
    };
    // Metadata an export adds; the log assigns these again.
    const METADATA: [&str; 5] = [
        "position",
        "version",
        "schema_version",
        "recorded_at",
        "actor",
    ];
    let (mut pending, mut lines): (Vec<serde_json::Value>, Vec<usize>) = (Vec::new(), Vec::new());
    let (mut appended, mut replayed) = (0usize, 0usize);
    let flush = |pending: Vec<serde_json::Value>, lines: Vec<usize>| {
        let app = app.clone();
        async move {
            let outcome = app
                .append(pending, "import", true)
                .await
                .map_err(|e| match e {
                    openptl_app::AppError::Rejected {
                        index: Some(i),
                        error,
                    } => {
                        anyhow::anyhow!("line {}: {} ({})", lines[i], error, error.code())
                    }
                    other => anyhow::anyhow!("{other}"),
                })?;
            anyhow::Ok(outcome)
        }
    };
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let mut value: serde_json::Value =
            serde_json::from_str(&line).with_context(|| format!("line {}: not JSON", n + 1))?;
        if let Some(map) = value.as_object_mut() {
            for key in METADATA {
                map.remove(key);
            }
        }
        pending.push(value);
        lines.push(n + 1);
        if pending.len() >= batch.max(1) {
            let outcome = flush(std::mem::take(&mut pending), std::mem::take(&mut lines)).await?;
            appended += outcome.appended.len();
            replayed += usize::from(outcome.all_replayed) * outcome.appended.len();
        }
    }
    if !pending.is_empty() {
        let outcome = flush(pending, lines).await?;
        appended += outcome.appended.len();
        replayed += usize::from(outcome.all_replayed) * outcome.appended.len();
    }
    println!(
        "{appended} events imported ({replayed} were already stored); log head {}",
        app.log.head()
    );
    Ok(())
}
