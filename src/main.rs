//! The `openptl` binary: one executable for the service and its tools
//! (SPEC 10). Parsing options and wiring components is all it does.

mod bench;
mod demo;
mod tracker_csv;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use openptl_app::projection::SnapshotPreload;
use openptl_app::{App, SystemClock};
use openptl_log::segment::{self, SegmentLog};
use openptl_log::EventLog;
use openptl_rules::RulesConfig;

/// mimalloc: the projection allocates many small, long-lived objects and the
/// append path many short-lived ones; glibc's allocator spent a third of a
/// rebuild consolidating free lists (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Create (once) an admin token with this secret at start-up, so
        /// scripts and tests can drive a fresh server (SPEC 10).
        #[arg(long, env = "OPENPTL_BOOTSTRAP_ADMIN_TOKEN", hide_env_values = true)]
        bootstrap_admin_token: Option<String>,
        /// Requests per second each token may sustain (bursts of twice that); 0: no limit.
        #[arg(long, env = "OPENPTL_RATE_LIMIT", default_value_t = openptl_app::DEFAULT_RATE_LIMIT)]
        rate_limit: f64,
        /// Failed sign-ins and invalid bearer tokens each client address may
        /// make in a burst (one more every 2 s after it) before it is
        /// answered 429 `rate_limited`; 0: no limit (a reverse proxy limits).
        #[arg(long, env = "OPENPTL_AUTH_FAILURE_BURST", default_value_t = openptl_http::auth::DEFAULT_FAILURE_BURST)]
        auth_failure_burst: u32,
        /// Where `POST /v1/backup` (admin) backs the log up while it runs;
        /// without it the API does not back up (`openptl backup` always can).
        #[arg(long, env = "OPENPTL_BACKUP_TO")]
        backup_to: Option<PathBuf>,
        /// Views of a past date (`as_of`, `known_at`) that may wait while
        /// one runs; more are answered 429 `busy`.
        #[arg(long, env = "OPENPTL_PAST_VIEW_QUEUE", default_value_t = openptl_app::DEFAULT_PAST_VIEW_QUEUE)]
        past_view_queue: usize,
        /// Live gRPC `Subscribe` streams the service keeps at once; more
        /// are refused `RESOURCE_EXHAUSTED`.
        #[arg(long, env = "OPENPTL_GRPC_MAX_SUBSCRIPTIONS", default_value_t = openptl_grpc::DEFAULT_SUBSCRIPTIONS)]
        grpc_max_subscriptions: usize,
        /// Seconds a client may take to send a request's headers (and a
        /// kept-alive connection may sit idle) before it is disconnected.
        #[arg(long, env = "OPENPTL_HEADER_READ_TIMEOUT", default_value_t = openptl_http::serve::DEFAULT_HEADER_READ_TIMEOUT.as_secs_f64())]
        header_read_timeout: f64,
        /// HTTP connections open at once; more wait to be accepted.
        #[arg(long, env = "OPENPTL_MAX_CONNECTIONS", default_value_t = openptl_http::serve::DEFAULT_MAX_CONNECTIONS)]
        max_connections: usize,
        /// HTTP connections (and, separately, gRPC connections) one client
        /// address (IPv6: its /64) may hold open; more are closed at once. Behind a reverse proxy every
        /// client has the proxy's address: raise it to --max-connections
        /// and limit at the proxy.
        #[arg(long, env = "OPENPTL_MAX_CONNECTIONS_PER_CLIENT", default_value_t = openptl_http::serve::DEFAULT_MAX_CONNECTIONS_PER_CLIENT)]
        max_connections_per_client: usize,
        /// Address for the gRPC API (`proto/openptl/v1`; port 0 picks a
        /// free port), or `off` for none.
        #[arg(long, env = "OPENPTL_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
        grpc_listen: String,
        /// Keep the event log in PostgreSQL (`postgres://user@host:port/db`)
        /// instead of the data directory's segment files: several nodes can
        /// then serve one log. The data directory still holds tokens, the
        /// access log and the projection snapshot.
        #[arg(long, env = "OPENPTL_STORE", hide_env_values = true)]
        store: Option<String>,
        /// The PostgreSQL schema of the log's tables (one database can hold
        /// several logs).
        #[arg(long, env = "OPENPTL_STORE_SCHEMA", default_value = "public")]
        store_schema: String,
        /// Append anchors of the log's hash chain (head position and hash,
        /// one JSON line each, fsync'd) to this file; default
        /// DATA_DIR/anchors.jsonl. Point it at storage the service cannot
        /// rewrite (a WORM share, a log shipper's input).
        #[arg(long, env = "OPENPTL_ANCHORS")]
        anchors: Option<PathBuf>,
        /// Seconds between anchors while the log moves (also one at
        /// start-up and one at shutdown); 0: no anchors.
        #[arg(long, env = "OPENPTL_ANCHOR_EVERY", default_value_t = openptl_app::anchoring::DEFAULT_ANCHOR_EVERY.as_secs_f64())]
        anchor_every: f64,
    },
    /// Manage access tokens in a data directory (works beside a running service).
    Token {
        #[arg(
            long,
            env = "OPENPTL_DATA_DIR",
            default_value = "./openptl-data",
            global = true
        )]
        data_dir: PathBuf,
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Re-read every segment (CRCs, positions, stream versions, hash chain) and
    /// check the index agrees. Exit status 0 only when the log is sound.
    Verify {
        #[arg(long, env = "OPENPTL_DATA_DIR", default_value = "./openptl-data")]
        data_dir: PathBuf,
        /// Also check the log against every anchor in this file (written by
        /// `serve`): each anchored record must still be there with its hash.
        #[arg(long)]
        anchors: Option<PathBuf>,
    },
    /// Back up a data directory into `--to`, beside the running service
    /// (no stop, no lock): the log up to an acknowledged position, the
    /// snapshot, the tokens and anchors files. A second backup into the same
    /// directory copies only what is new. Prints the position and head hash.
    Backup {
        #[arg(long, env = "OPENPTL_DATA_DIR", default_value = "./openptl-data")]
        data_dir: PathBuf,
        /// Where the backup goes (created if need be).
        #[arg(long)]
        to: PathBuf,
    },
    /// Restore a backup into a new data directory (which must not hold a
    /// log), checking it whole; then start the service on `--to`.
    Restore {
        /// The backup.
        #[arg(long)]
        from: PathBuf,
        /// The new data directory.
        #[arg(long)]
        to: PathBuf,
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
        /// `ndjson` (the whole log) or `cwt` (the monthly CWT data set
        /// submission of `--period`, exactly as `GET /v1/returns/cwt`).
        #[arg(long, default_value = "ndjson")]
        format: String,
        /// The month of the `cwt` submission, YYYY-MM.
        #[arg(long)]
        period: Option<String>,
    },
    /// Append NDJSON event envelopes (SPEC 3.1; an export's metadata fields are
    /// ignored) through the same validation as the API. The service must be stopped.
    Import {
        /// The file: NDJSON envelopes, or a tracker CSV (`.csv`; layout in
        /// docs/import.md). `-` for standard input (NDJSON).
        file: PathBuf,
        #[arg(long, env = "OPENPTL_DATA_DIR", default_value = "./openptl-data")]
        data_dir: PathBuf,
        /// Events per atomic batch (NDJSON).
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// `ndjson` or `csv` (default: from the file name).
        #[arg(long)]
        format: Option<String>,
        /// CSV: check every row against the rules and report; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// CSV: import the valid rows even when some are invalid (they are reported).
        #[arg(long)]
        skip_invalid: bool,
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
        /// With `--views`: keep the alliance in this directory, and reuse
        /// it when it is already there (repeat runs skip writing).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// With `--views`: spread referrals over this many days (the demo's
        /// 240 leaves 13 % of pathways open; 135 gives the 300,000 open
        /// among 10M events of issue #4's target with 1,400,000 pathways).
        #[arg(long, default_value_t = 240)]
        referral_days: u64,
        /// Run the append benchmark on PostgreSQL too (a scratch schema
        /// `openptl_bench`) and print the ratio to the embedded log.
        #[arg(long)]
        store: Option<String>,
    },
    /// Copy a log record by record, as stored (event ids, positions,
    /// recorded_at, actors and so the hash chain kept), between the
    /// embedded store and PostgreSQL. Resumes where the destination ends.
    /// Both services must be stopped (or the destination unused).
    Copy {
        /// A data directory, or a postgres:// URL.
        #[arg(long)]
        from: String,
        /// A data directory, or a postgres:// URL.
        #[arg(long)]
        to: String,
        /// The PostgreSQL schema of `--from`, if it is PostgreSQL.
        #[arg(long, default_value = "public")]
        from_schema: String,
        /// The PostgreSQL schema of `--to`, if it is PostgreSQL.
        #[arg(long, default_value = "public")]
        to_schema: String,
    },
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
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

#[derive(Subcommand)]
enum TokenAction {
    /// Create a token and print its secret (shown once).
    Create {
        /// coordinator, manager, alliance_viewer, analyst or admin.
        #[arg(long)]
        role: String,
        /// A trust (ODS code) the token covers; repeat for several, `*` for all.
        #[arg(long = "trust")]
        trusts: Vec<String>,
        /// The alliance an alliance_viewer reads (from the rules file).
        #[arg(long)]
        alliance: Option<String>,
        /// Who holds it (recorded as the actor of their events).
        #[arg(long)]
        label: Option<String>,
        /// Days until it expires (0: never).
        #[arg(long, default_value_t = 90)]
        expires_in_days: i64,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
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
            bootstrap_admin_token,
            rate_limit,
            auth_failure_burst,
            backup_to,
            past_view_queue,
            grpc_max_subscriptions,
            header_read_timeout,
            max_connections,
            max_connections_per_client,
            grpc_listen,
            store,
            store_schema,
            anchors,
            anchor_every,
        } => {
            let grpc_listen = match grpc_listen.as_str() {
                "off" => None,
                addr => Some(addr.parse::<SocketAddr>().with_context(|| {
                    format!(
                        "--grpc-listen {addr}: expected an address such as 127.0.0.1:50051, or off"
                    )
                })?),
            };
            let listen = Listen {
                http: listen,
                grpc: grpc_listen,
                store: store.map(|url| (url, store_schema)),
                backup_to,
                anchoring: anchoring_of(&data_dir, anchors, anchor_every)?,
            };
            let limits = Limits {
                auth_failure_burst,
                past_view_queue,
                http: openptl_http::ServeLimits {
                    header_read_timeout: std::time::Duration::try_from_secs_f64(
                        header_read_timeout,
                    )
                    .ok()
                    .filter(|d| !d.is_zero())
                    .context("--header-read-timeout: expected seconds above 0, such as 10")?,
                    max_connections,
                    max_connections_per_client,
                },
                grpc: openptl_grpc::Limits {
                    subscriptions: grpc_max_subscriptions,
                    connections_per_client: max_connections_per_client,
                    ..openptl_grpc::Limits::default()
                },
            };
            serve(
                config,
                data_dir,
                listen,
                demo.then_some(demo_pathways),
                bootstrap_admin_token,
                rate_limit,
                limits,
            )
            .await
        }
        Command::Token { data_dir, action } => token(&config, &data_dir, action),
        Command::Verify { data_dir, anchors } => {
            let report = segment::verify(&data_dir)?;
            println!(
                "{} records in {} segments, {} pathways; CRCs, positions, versions and hash chain checked",
                report.records, report.segments, report.streams
            );
            for problem in &report.problems {
                println!("PROBLEM: {problem}");
            }
            if report.damage_mark_cleared {
                println!("The damage mark of an earlier check was removed: the log checks out, and the service will start again.");
            }
            let anchored = verify_anchors(&data_dir, anchors.as_deref());
            match (report.problems.is_empty(), anchored) {
                (true, Ok(())) => {
                    println!("OK");
                    Ok(())
                }
                (true, Err(e)) => Err(e),
                (false, anchored) => {
                    let mut problems = report.problems.len();
                    if let Err(e) = anchored {
                        println!("PROBLEM: {e:#}");
                        problems += 1;
                    }
                    anyhow::bail!("{problems} problems found")
                }
            }
        }
        Command::Backup { data_dir, to } => {
            let report = segment::backup(&data_dir, &to, &mut |step| match step {
                segment::Progress::Segment {
                    number,
                    index,
                    of,
                    offset,
                    len,
                } => {
                    eprintln!("segment {number} ({index} of {of}): copying bytes {offset} to {len}")
                }
                segment::Progress::Checking => eprintln!("checking the copy"),
            })?;
            println!(
                "backup of {} in {}: position {}, head hash {} ({} of {} segments copied, {} bytes; {})",
                data_dir.display(),
                to.display(),
                report.position,
                hex(&report.head_hash),
                report.segments_copied,
                report.segments,
                report.bytes_copied,
                if report.files.is_empty() { "no other files".to_string() } else { report.files.join(", ") },
            );
            Ok(())
        }
        Command::Restore { from, to } => {
            let report = segment::restore(&from, &to)?;
            let verified = segment::verify(&to)?;
            if !verified.problems.is_empty() {
                anyhow::bail!(
                    "the restored log has problems: {}",
                    verified.problems.join("; ")
                );
            }
            println!(
                "restored {} into {}: position {}, head hash {}; verified. Start the service with --data-dir {}",
                from.display(),
                to.display(),
                report.position,
                hex(&report.head_hash),
                to.display()
            );
            Ok(())
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
            data_dir,
            referral_days,
            store,
        } => {
            if views {
                return bench::views(pathways, 1, data_dir, referral_days).await;
            }
            bench::run(
                bench::BenchOptions {
                    pathways,
                    batch_events,
                    batch_requests,
                    single_requests,
                    clients,
                },
                store,
            )
            .await
        }
        Command::Export {
            data_dir,
            format,
            period,
        } => match format.as_str() {
            "ndjson" => export(&data_dir).await,
            "cwt" => {
                let period = period
                    .as_deref()
                    .and_then(openptl_rules::Period::parse)
                    .context("--format cwt needs --period YYYY-MM")?;
                let app = open_app(config, &data_dir).await?;
                let (lines, _) = app
                    .cwt(
                        &openptl_app::ViewAt::default(),
                        period,
                        &openptl_app::TrustFilter::default(),
                        &openptl_app::access::Principal::system("export"),
                    )
                    .await?;
                print!("{}", openptl_http::cwt_csv(&lines));
                Ok(())
            }
            other => anyhow::bail!("--format {other}: use ndjson or cwt"),
        },
        Command::Copy {
            from,
            to,
            from_schema,
            to_schema,
        } => {
            let source = open_store(&from, &from_schema).await?;
            let destination = open_store(&to, &to_schema).await?;
            let copied = copy_log(source.as_ref(), destination.as_ref()).await?;
            println!(
                "copied {copied} records; the destination now holds {}",
                destination.head()
            );
            Ok(())
        }
        Command::Openapi => {
            println!(
                "{}",
                serde_json::to_string_pretty(&openptl_http::openapi::document())?
            );
            Ok(())
        }
        Command::Import {
            file,
            data_dir,
            batch,
            format,
            dry_run,
            skip_invalid,
        } => {
            let csv = match format.as_deref() {
                Some("csv") => true,
                Some("ndjson") => false,
                Some(other) => anyhow::bail!("--format {other}: use ndjson or csv"),
                None => file
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("csv")),
            };
            if csv {
                import_csv(config, &file, &data_dir, dry_run, skip_invalid).await
            } else {
                anyhow::ensure!(
                    !dry_run && !skip_invalid,
                    "--dry-run and --skip-invalid are for CSV imports"
                );
                import(config, &file, &data_dir, batch).await
            }
        }
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

fn token(
    config: &RulesConfig,
    data_dir: &std::path::Path,
    action: TokenAction,
) -> anyhow::Result<()> {
    use openptl_app::tokens::{NewToken, TokenStore};
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let store = TokenStore::open(&data_dir.join("tokens.json"))?;
    let now = chrono::Utc::now();
    match action {
        TokenAction::Create {
            role,
            trusts,
            alliance,
            label,
            expires_in_days,
        } => {
            let role = openptl_app::access::Role::parse(&role).with_context(|| {
                format!(
                    "--role {role}: use coordinator, manager, alliance_viewer, analyst or admin"
                )
            })?;
            if let Some(name) = &alliance {
                anyhow::ensure!(
                    config.alliances.contains_key(name),
                    "--alliance {name} is not in the rules file's [alliances]"
                );
            }
            let (record, secret) = store.create(
                NewToken {
                    role,
                    trusts,
                    alliance,
                    label,
                    expires_at: (expires_in_days > 0)
                        .then(|| now + chrono::Duration::days(expires_in_days)),
                },
                now,
            )?;
            eprintln!(
                "token {} for {} ({}) created; keep the secret below safe, it is not shown again",
                record.id,
                record.label,
                record.role.as_str()
            );
            println!("{secret}");
        }
        TokenAction::List => {
            for t in store.list() {
                println!(
                    "{}  {:<16} {:<28} trusts={} alliance={} expires={} {}",
                    t.id,
                    t.role.as_str(),
                    t.label,
                    t.trusts.join(","),
                    t.alliance.as_deref().unwrap_or("-"),
                    t.expires_at.map_or("never".to_string(), |e| e.to_rfc3339()),
                    if t.revoked_at.is_some() {
                        "REVOKED"
                    } else {
                        ""
                    }
                );
            }
        }
        TokenAction::Revoke { id } => {
            store.revoke(&id, now)?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

/// The projection snapshot, in the data directory (derived, safe to delete).
const SNAPSHOT_FILE: &str = "projection.snapshot";

/// Where `serve` listens, and where its log is.
struct Listen {
    http: SocketAddr,
    grpc: Option<SocketAddr>,
    /// A PostgreSQL URL and schema; `None`: the segment log in the data directory.
    store: Option<(String, String)>,
    /// Where `POST /v1/backup` writes (`--backup-to`).
    backup_to: Option<PathBuf>,
    /// Where the log's anchors go, and how often (`None`: no anchors).
    anchoring: Option<Anchoring>,
}

/// What `serve` bounds under abuse and overload (docs/operations.md).
struct Limits {
    /// Failed authentications per client address before 429 (0: no limit).
    auth_failure_burst: u32,
    /// Past-date views that may wait while one runs.
    past_view_queue: usize,
    /// The HTTP listener's (header read timeout, open connections).
    http: openptl_http::ServeLimits,
    /// The gRPC server's.
    grpc: openptl_grpc::Limits,
}

async fn serve(
    config: RulesConfig,
    data_dir: PathBuf,
    listen: Listen,
    demo: Option<usize>,
    bootstrap_admin_token: Option<String>,
    rate_limit: f64,
    limits: Limits,
) -> anyhow::Result<()> {
    use openptl_app::access::{Principal, Role};
    use openptl_app::tokens::{NewToken, TokenStore};
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    // The projection snapshot is read and decoded while the log opens.
    let snapshot_path = data_dir.join(SNAPSHOT_FILE);
    let preload = SnapshotPreload::start(snapshot_path.clone(), config.clone());
    let log: Arc<dyn EventLog> = match &listen.store {
        Some((url, schema)) => Arc::new(
            openptl_log::PgLog::open_in_schema(url, schema)
                .await
                .context("opening the PostgreSQL event log (--store)")?,
        ),
        None => Arc::new(
            SegmentLog::open(&data_dir)
                .with_context(|| format!("opening the event log in {}", data_dir.display()))?,
        ),
    };
    let tokens = TokenStore::open(&data_dir.join("tokens.json"))?;
    let access_log = openptl_app::audit::AccessLog::open(&data_dir.join("access.log"))
        .with_context(|| format!("opening {}", data_dir.join("access.log").display()))?;
    let now = chrono::Utc::now();
    if let Some(secret) = &bootstrap_admin_token {
        tokens.create_with_secret(
            NewToken {
                role: Role::Admin,
                trusts: Vec::new(),
                alliance: None,
                label: Some("bootstrap-admin".into()),
                expires_at: None,
            },
            now,
            Some(secret),
        )?;
    }
    let demo_login = match demo {
        Some(_) => {
            let trusts: Vec<String> = config
                .alliances
                .get("demo")
                .map(|t| t.iter().map(|c| c.as_str().to_string()).collect())
                .unwrap_or_else(|| vec!["*".into()]);
            let (_, secret) = tokens.create(
                NewToken {
                    role: Role::Coordinator,
                    trusts,
                    alliance: None,
                    label: Some("demo-coordinator".into()),
                    expires_at: Some(now + chrono::Duration::days(30)),
                },
                now,
            )?;
            Some(secret)
        }
        None => None,
    };
    if !tokens.any_usable(now) {
        tracing::warn!(
            "no access token exists, so nobody can use the API: set OPENPTL_BOOTSTRAP_ADMIN_TOKEN \
             or run `openptl token create --role admin --data-dir {}`",
            data_dir.display()
        );
    }
    let mut app = App::open_preloaded(
        log,
        config,
        Arc::new(SystemClock),
        Some(snapshot_path),
        preload,
    )
    .with_tokens(tokens)
    .with_access_log(access_log)
    .with_rate_limit(rate_limit)
    .with_past_view_queue(limits.past_view_queue);
    if let Some(dir) = listen.backup_to.clone() {
        app = app.with_backup_to(dir);
    }
    let app = Arc::new(app);
    catch_up(&app).await?;
    if let Some(pathways) = demo {
        if app.log.head() == 0 {
            let loaded = demo::load(&app, pathways, &Principal::system("demo-loader")).await?;
            tracing::info!(events = loaded, pathways, "demo alliance loaded");
        }
    }
    let anchorer = listen.anchoring.map(|a| {
        (
            Arc::new(openptl_app::anchoring::Anchorer::new(&a.path)),
            a.every,
        )
    });
    // One table of failed authentications per client address, shared by
    // HTTP and gRPC.
    let failures = Arc::new(openptl_http::FailedAuth::new(
        limits.auth_failure_burst,
        openptl_http::auth::DEFAULT_FAILURE_REFILL_SECONDS,
        openptl_http::auth::FAILURE_TABLE_LIMIT,
    ));
    let listener = tokio::net::TcpListener::bind(listen.http)
        .await
        .with_context(|| format!("binding {}", listen.http))?;
    let addr = listener.local_addr()?;
    let shutdown = shutdown_signal();
    // One stop signal for both servers (and the gRPC subscriptions).
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let watched = app.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = shutdown => {}
            damage = log_damage(&watched) => {
                tracing::error!(%damage, "stopping: the event log is damaged");
            }
        }
        let _ = stop_tx.send(true);
    });
    if let Some((anchorer, every)) = &anchorer {
        tokio::spawn(openptl_app::anchoring::run(
            app.clone(),
            anchorer.clone(),
            *every,
            stop.clone(),
        ));
    }
    let grpc = match listen.grpc {
        Some(grpc_addr) => {
            let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
                .await
                .with_context(|| format!("binding {grpc_addr} for gRPC"))?;
            let bound = grpc_listener.local_addr()?;
            println!("OpenPTL gRPC listening on http://{bound}");
            Some(tokio::spawn(openptl_grpc::serve(
                app.clone(),
                failures.clone(),
                limits.grpc,
                grpc_listener,
                stop.clone(),
            )))
        }
        None => None,
    };
    if let Some(secret) = &demo_login {
        // Before the "listening" line, which scripts wait for.
        println!("Demo login (a coordinator of the six demo trusts, valid 30 days): {secret}");
    }
    // Scripts and tests read this line to find the port.
    println!("OpenPTL listening on http://{addr}");
    if demo.is_some() {
        println!(
            "Dashboard: http://{addr}/ (sign in with the demo login above). API: curl -H 'Authorization: Bearer <token>' http://{addr}/v1/ptl"
        );
    }
    let mut http_stop = stop.clone();
    openptl_http::serve(
        listener,
        openptl_http::router_with(app.clone(), failures.clone()),
        limits.http,
        async move {
            let _ = http_stop.wait_for(|stopped| *stopped).await;
        },
    )
    .await;
    if let Some(grpc) = grpc {
        grpc.await
            .context("the gRPC server stopped abnormally")?
            .context("serving gRPC")?;
    }
    if let Some(damage) = app.log.damage() {
        // No snapshot of a projection folded from an altered history.
        anyhow::bail!("the event log is damaged: {damage}. Restore the segments from a backup, then run `openptl verify`; the service starts again once it reports OK");
    }
    if let Some((anchorer, _)) = &anchorer {
        // The head after the last append, anchored before the process ends.
        anchorer.anchor_logged(&app).await;
    }
    // The next start reads this instead of folding the whole log again.
    match app.write_snapshot().await {
        Ok(Some(done)) => tracing::info!(
            position = done.position,
            bytes = done.bytes,
            "projection snapshot written"
        ),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "the projection snapshot was not written"),
    }
    tracing::info!("stopped");
    Ok(())
}

/// Where and how often `serve` anchors the log's hash chain (issue 27).
struct Anchoring {
    path: PathBuf,
    every: std::time::Duration,
}

/// The anchoring `serve --anchors FILE --anchor-every SECONDS` asks for
/// (`None`: off).
fn anchoring_of(
    data_dir: &std::path::Path,
    anchors: Option<PathBuf>,
    every: f64,
) -> anyhow::Result<Option<Anchoring>> {
    let every = std::time::Duration::try_from_secs_f64(every)
        .ok()
        .context("--anchor-every: expected seconds, such as 600 (0: no anchors)")?;
    Ok((!every.is_zero()).then(|| Anchoring {
        path: anchors.unwrap_or_else(|| data_dir.join(openptl_app::anchoring::ANCHORS_FILE)),
        every,
    }))
}

/// `openptl verify --anchors FILE`: every anchor in FILE against the log.
fn verify_anchors(
    data_dir: &std::path::Path,
    anchors: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let Some(file) = anchors else {
        return Ok(());
    };
    let read = openptl_log::anchor::read(file)?;
    for line in &read.torn {
        println!(
            "NOTE: line {line} of {} is not JSON (a write torn by a crash?); passed over",
            file.display()
        );
    }
    let checked = segment::verify_anchors(data_dir, &read.anchors)
        .with_context(|| format!("checking the anchors of {}", file.display()))?;
    println!(
        "{checked} anchors of {} checked: every anchored record is there with its hash",
        file.display()
    );
    Ok(())
}

/// Resolves with the damage once the log reports some (its background
/// hash-chain check, decision 67): the service then stops, as EventStoreDB
/// does when a chunk fails its background verification.
async fn log_damage(app: &openptl_app::App) -> String {
    loop {
        if let Some(damage) = app.log.damage() {
            return damage;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Resolves on SIGINT or SIGTERM: stop accepting, let in-flight requests finish.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    // Handlers are installed now, not when the future is first polled: a
    // signal that arrives just after the "listening" line must still shut
    // down cleanly.
    #[cfg(unix)]
    let (mut term, mut int) = {
        use tokio::signal::unix::{signal, SignalKind};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = wait_for(&mut term) => {},
                _ = wait_for(&mut int) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown requested");
    }
}

/// Resolves when `signal` arrives (never, if it could not be installed).
#[cfg(unix)]
async fn wait_for(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
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
/// A log named by a data directory or a `postgres://` URL.
async fn open_store(place: &str, schema: &str) -> anyhow::Result<Arc<dyn EventLog>> {
    if place.starts_with("postgres://") || place.starts_with("postgresql://") {
        Ok(Arc::new(
            openptl_log::PgLog::open_in_schema(place, schema)
                .await
                .context("opening the PostgreSQL log")?,
        ))
    } else {
        open_log(std::path::Path::new(place))
    }
}

/// Copies every record of `source` after the destination's head, as stored.
async fn copy_log(source: &dyn EventLog, destination: &dyn EventLog) -> anyhow::Result<u64> {
    let mut from = destination.head() + 1;
    let mut copied = 0u64;
    loop {
        let page = source.read_all(from, 5_000).await?;
        let Some(last) = page.last() else { break };
        from = last.position + 1;
        copied += page.len() as u64;
        destination
            .append_verbatim(page)
            .await
            .context("the destination refused the records (does it hold another log?)")?;
        if copied % 100_000 < 5_000 {
            tracing::info!(copied, "copying");
        }
    }
    Ok(copied)
}

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
    let app = Arc::new(App::open(
        open_log(data_dir)?,
        config,
        Arc::new(SystemClock),
        Some(data_dir.join(SNAPSHOT_FILE)),
    ));
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

/// `openptl import FILE.csv`: every row is checked first (with its line
/// number on failure); nothing is written if any row is invalid unless
/// `--skip-invalid`; each row is then appended atomically.
async fn import_csv(
    config: RulesConfig,
    file: &std::path::Path,
    data_dir: &std::path::Path,
    dry_run: bool,
    skip_invalid: bool,
) -> anyhow::Result<()> {
    let parse = |namespace: &uuid::Uuid| -> anyhow::Result<_> {
        let input =
            std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
        tracker_csv::read(input, namespace).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    };
    let app = open_app(config, data_dir).await?;
    let namespace = import_namespace(
        &app,
        data_dir,
        &parse(&tracker_csv::LEGACY_NAMESPACE)?.0,
        dry_run,
    )
    .await?;
    let (rows, mut errors) = parse(&namespace)?;
    let importer = openptl_app::access::Principal::system("csv-import");
    let mut valid = Vec::new();
    for row in rows {
        match app.check(row.envelopes.clone(), &importer).await {
            Ok(_) => valid.push(row),
            Err(e) => errors.push(tracker_csv::RowError {
                line: row.line,
                message: row_error(&e, &row),
            }),
        }
    }
    errors.sort_by_key(|e| e.line);
    for e in &errors {
        eprintln!("line {}: {}", e.line, e.message);
    }
    let events: usize = valid.iter().map(|r| r.envelopes.len()).sum();
    if dry_run {
        println!(
            "dry run: {} rows valid ({events} events), {} invalid; nothing written",
            valid.len(),
            errors.len()
        );
        anyhow::ensure!(errors.is_empty(), "{} invalid rows", errors.len());
        return Ok(());
    }
    if !errors.is_empty() && !skip_invalid {
        anyhow::bail!(
            "{} invalid rows (above): nothing was written; fix them, or pass --skip-invalid",
            errors.len()
        );
    }
    let (mut appended, mut replayed) = (0usize, 0usize);
    for row in &valid {
        let outcome = app
            .append(row.envelopes.clone(), &importer, true)
            .await
            .map_err(|e| anyhow::anyhow!("line {}: {}", row.line, row_error(&e, row)))?;
        let new: usize = outcome.new_by_type.iter().map(|(_, n)| *n as usize).sum();
        appended += new;
        replayed += outcome.appended.len() - new;
    }
    println!(
        "{} rows imported: {appended} events appended, {replayed} already stored; {} rows skipped",
        valid.len(),
        errors.len()
    );
    Ok(())
}

/// Where a data directory keeps the namespace of its import ids.
const IMPORT_KEY: &str = "import.key";

/// The namespace of the ids an import gives its events in `data_dir`
/// (decision 102): random per data directory and kept in `import.key`, so
/// that nobody can compute another trust's ids from its pathway ids. A data
/// directory that already holds imports of the first, unkeyed ids (found by
/// a referral of `rows` stored under them) keeps those, or a re-import would
/// append everything again.
async fn import_namespace(
    app: &openptl_app::App,
    data_dir: &std::path::Path,
    rows: &[tracker_csv::Row],
    dry_run: bool,
) -> anyhow::Result<uuid::Uuid> {
    let path = data_dir.join(IMPORT_KEY);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = text.trim();
            return if text == "legacy" {
                Ok(tracker_csv::LEGACY_NAMESPACE)
            } else {
                uuid::Uuid::parse_str(text)
                    .with_context(|| format!("{} holds no namespace", path.display()))
            };
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("reading {}", path.display()));
        }
        Err(_) => {}
    }
    let mut legacy = false;
    for row in rows {
        let id = row.envelopes.first().and_then(|e| e["event_id"].as_str());
        if let Some(id) = id.and_then(|id| uuid::Uuid::parse_str(id).ok()) {
            if app.log.find_event(id).await?.is_some() {
                legacy = true;
                break;
            }
        }
    }
    let namespace = if legacy {
        tracker_csv::LEGACY_NAMESPACE
    } else {
        uuid::Uuid::new_v4()
    };
    if !dry_run {
        let text = if legacy {
            "legacy".to_string()
        } else {
            namespace.to_string()
        };
        let tmp = path.with_extension("key.tmp");
        std::fs::write(&tmp, format!("{text}\n"))
            .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(namespace)
}

/// A row's refusal, naming the event of the row it concerns.
fn row_error(e: &openptl_app::AppError, row: &tracker_csv::Row) -> String {
    let event = |index: &Option<usize>| {
        index
            .and_then(|i| row.envelopes.get(i))
            .and_then(|v| v["type"].as_str())
            .map_or(String::new(), |t| format!(" (the {t} event)"))
    };
    match e {
        openptl_app::AppError::Rejected { index, error } => {
            format!("{error} [{}]{}", error.code(), event(index))
        }
        openptl_app::AppError::DuplicateEventId { index } => format!(
            "this row changes an event already imported{}; record a correction instead [duplicate_event_id]",
            event(index)
        ),
        other => other.to_string(),
    }
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
                .append(
                    pending,
                    &openptl_app::access::Principal::system("import"),
                    true,
                )
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

/// Bytes as lower-case hex (hashes for the operator).
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
