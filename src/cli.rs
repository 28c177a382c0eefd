//! The command line: every subcommand, flag, environment variable and
//! default of `openptl` (clap), and reading the `--rules` file. What each
//! command does lives in `commands/`, `server.rs` and `bench/`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use openptl_rules::RulesConfig;

use crate::server;

#[derive(Parser)]
#[command(
    name = "openptl",
    version,
    about = "Cancer pathway tracking: the single PTL, FDS/31/62-day clocks, BPTP milestones"
)]
pub struct Cli {
    /// Rules configuration (targets, RAG bands, milestone templates); the shipped defaults when absent.
    #[arg(long, global = true, env = "OPENPTL_RULES")]
    pub rules: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true, env = "OPENPTL_LOG_JSON")]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the service.
    Serve(ServeArgs),
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
        /// Check the PostgreSQL log (`postgres://…`) instead of the data
        /// directory's segments: positions, versions, the hash chain and
        /// the head row, read in one snapshot beside running nodes.
        #[arg(long, env = "OPENPTL_STORE", hide_env_values = true)]
        store: Option<String>,
        /// The PostgreSQL schema of the log's tables.
        #[arg(long, env = "OPENPTL_STORE_SCHEMA", default_value = "public")]
        store_schema: String,
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
        /// Backtest the breach forecasts instead (issue 24): on the
        /// synthetic alliance with site-specific waits, forecast each
        /// month-end on the 10th and 20th as known then and compare with
        /// what happened (`--pathways`, `--referral-days`).
        #[arg(long, conflicts_with = "views")]
        forecast: bool,
        /// With `--views`: keep the alliance in this directory, and reuse
        /// it when it is already there (repeat runs skip writing).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// With `--views`: spread referrals over this many days (the demo's
        /// 240 leaves 13 % of pathways open; 135 gives the 300,000 open
        /// among 10M events of issue #4's target with 1,400,000 pathways).
        #[arg(long, default_value_t = 240)]
        referral_days: u64,
        /// With `--views`: stop after the restart and memory figures (to
        /// compare the memory of two builds, alternated, without timing
        /// every view).
        #[arg(long, requires = "views")]
        memory_only: bool,
        /// With `--views`: after the restart and memory figures, move the
        /// clock on a day and measure the new day's refresh of every
        /// pathway and of today's aggregates, then stop.
        #[arg(long, requires = "views")]
        new_day: bool,
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

// The flags of `openptl serve` (a plain comment: the variant's doc comment
// is the subcommand's help).
#[derive(Args)]
pub struct ServeArgs {
    /// Where the event log lives.
    #[arg(long, env = "OPENPTL_DATA_DIR", default_value = "./openptl-data")]
    pub data_dir: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "OPENPTL_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Load the seeded synthetic alliance first (into an empty log).
    #[arg(long, env = "OPENPTL_DEMO")]
    pub demo: bool,
    /// Pathways in the demo data set.
    #[arg(long, env = "OPENPTL_DEMO_PATHWAYS", default_value_t = 5000)]
    pub demo_pathways: usize,
    /// Create (once) an admin token with this secret at start-up, so
    /// scripts and tests can drive a fresh server (SPEC 10).
    #[arg(long, env = "OPENPTL_BOOTSTRAP_ADMIN_TOKEN", hide_env_values = true)]
    pub bootstrap_admin_token: Option<String>,
    /// Requests per second each token may sustain (bursts of twice that); 0: no limit.
    #[arg(long, env = "OPENPTL_RATE_LIMIT", default_value_t = openptl_app::DEFAULT_RATE_LIMIT)]
    pub rate_limit: f64,
    /// Failed sign-ins and invalid bearer tokens each client address may
    /// make in a burst (one more every 2 s after it) before it is
    /// answered 429 `rate_limited`; 0: no limit (a reverse proxy limits).
    #[arg(long, env = "OPENPTL_AUTH_FAILURE_BURST", default_value_t = openptl_http::auth::DEFAULT_FAILURE_BURST)]
    pub auth_failure_burst: u32,
    /// The trust's reverse proxies (addresses or networks such as
    /// 10.0.0.0/8; repeat the flag or separate by commas): a request from
    /// one is counted against the client its `X-Forwarded-For` names for
    /// the limit of failed sign-ins, and their connections are not capped
    /// per address. Anyone else's `X-Forwarded-For` is ignored.
    #[arg(
        long = "trusted-proxy",
        env = "OPENPTL_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<String>,
    /// Where `POST /v1/backup` (admin) backs the log up while it runs;
    /// without it the API does not back up (`openptl backup` always can).
    #[arg(long, env = "OPENPTL_BACKUP_TO")]
    pub backup_to: Option<PathBuf>,
    /// Views of a past date (`as_of`, `known_at`) that may wait while
    /// one runs; more are answered 429 `busy`.
    #[arg(long, env = "OPENPTL_PAST_VIEW_QUEUE", default_value_t = openptl_app::DEFAULT_PAST_VIEW_QUEUE)]
    pub past_view_queue: usize,
    /// Live gRPC `Subscribe` streams the service keeps at once; more
    /// are refused `RESOURCE_EXHAUSTED`.
    #[arg(long, env = "OPENPTL_GRPC_MAX_SUBSCRIPTIONS", default_value_t = openptl_grpc::DEFAULT_SUBSCRIPTIONS)]
    pub grpc_max_subscriptions: usize,
    /// Seconds a client may take to send a request's headers (and a
    /// kept-alive connection may sit idle) before it is disconnected.
    #[arg(long, env = "OPENPTL_HEADER_READ_TIMEOUT", default_value_t = openptl_http::serve::DEFAULT_HEADER_READ_TIMEOUT.as_secs_f64())]
    pub header_read_timeout: f64,
    /// HTTP connections open at once; more wait to be accepted.
    #[arg(long, env = "OPENPTL_MAX_CONNECTIONS", default_value_t = openptl_http::serve::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// HTTP connections (and, separately, gRPC connections) one client
    /// address (IPv6: its /64) may hold open; more are closed at once. Behind a reverse proxy every
    /// client has the proxy's address: raise it to --max-connections
    /// and limit at the proxy.
    #[arg(long, env = "OPENPTL_MAX_CONNECTIONS_PER_CLIENT", default_value_t = openptl_http::serve::DEFAULT_MAX_CONNECTIONS_PER_CLIENT)]
    pub max_connections_per_client: usize,
    /// Address for the gRPC API (`proto/openptl/v1`; port 0 picks a
    /// free port), or `off` for none.
    #[arg(long, env = "OPENPTL_GRPC_LISTEN", default_value = "127.0.0.1:50051")]
    pub grpc_listen: String,
    /// Keep the event log in PostgreSQL (`postgres://user@host:port/db`)
    /// instead of the data directory's segment files: several nodes can
    /// then serve one log. The data directory still holds tokens, the
    /// access log and the projection snapshot.
    #[arg(long, env = "OPENPTL_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// The PostgreSQL schema of the log's tables (one database can hold
    /// several logs).
    #[arg(long, env = "OPENPTL_STORE_SCHEMA", default_value = "public")]
    pub store_schema: String,
    /// Append anchors of the log's hash chain (head position and hash,
    /// one JSON line each, fsync'd) to this file; default
    /// DATA_DIR/anchors.jsonl. Point it at storage the service cannot
    /// rewrite (a WORM share, a log shipper's input).
    #[arg(long, env = "OPENPTL_ANCHORS")]
    pub anchors: Option<PathBuf>,
    /// Seconds between anchors while the log moves (also one at
    /// start-up and one at shutdown); 0: no anchors.
    #[arg(long, env = "OPENPTL_ANCHOR_EVERY", default_value_t = openptl_app::anchoring::DEFAULT_ANCHOR_EVERY.as_secs_f64())]
    pub anchor_every: f64,
}

impl ServeArgs {
    /// The server's options from these flags (checking what clap cannot).
    pub fn options(self, rules: RulesConfig) -> anyhow::Result<server::Options> {
        let ServeArgs {
            data_dir,
            listen,
            demo,
            demo_pathways,
            bootstrap_admin_token,
            rate_limit,
            auth_failure_burst,
            trusted_proxies,
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
        } = self;
        let grpc_listen = match grpc_listen.as_str() {
            "off" => None,
            addr => Some(addr.parse::<SocketAddr>().with_context(|| {
                format!("--grpc-listen {addr}: expected an address such as 127.0.0.1:50051, or off")
            })?),
        };
        let listen = server::Listen {
            http: listen,
            grpc: grpc_listen,
            store: store.map(|url| (url, store_schema)),
            backup_to,
            anchoring: anchoring_of(&data_dir, anchors, anchor_every)?,
        };
        let trusted_proxies =
            openptl_app::proxies::TrustedProxies::parse(&trusted_proxies.join(","))
                .map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}"))?;
        let limits = server::Limits {
            auth_failure_burst,
            trusted_proxies: trusted_proxies.clone(),
            past_view_queue,
            http: openptl_http::ServeLimits {
                header_read_timeout: std::time::Duration::try_from_secs_f64(header_read_timeout)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .context("--header-read-timeout: expected seconds above 0, such as 10")?,
                max_connections,
                max_connections_per_client,
                trusted_proxies,
            },
            grpc: openptl_grpc::Limits {
                subscriptions: grpc_max_subscriptions,
                connections_per_client: max_connections_per_client,
                ..openptl_grpc::Limits::default()
            },
        };
        Ok(server::Options {
            rules,
            data_dir,
            listen,
            demo: demo.then_some(demo_pathways),
            bootstrap_admin_token,
            rate_limit,
            limits,
        })
    }
}

/// The anchoring `serve --anchors FILE --anchor-every SECONDS` asks for
/// (`None`: off).
fn anchoring_of(
    data_dir: &std::path::Path,
    anchors: Option<PathBuf>,
    every: f64,
) -> anyhow::Result<Option<server::Anchoring>> {
    let every = std::time::Duration::try_from_secs_f64(every)
        .ok()
        .context("--anchor-every: expected seconds, such as 600 (0: no anchors)")?;
    Ok((!every.is_zero()).then(|| server::Anchoring {
        path: anchors.unwrap_or_else(|| data_dir.join(openptl_app::anchoring::ANCHORS_FILE)),
        every,
    }))
}

#[derive(Subcommand)]
pub enum TokenAction {
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

/// The rules configuration of `--rules` (the shipped defaults without it).
pub fn rules(path: Option<&PathBuf>) -> anyhow::Result<RulesConfig> {
    match path {
        None => Ok(RulesConfig::defaults()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            RulesConfig::from_toml(&text).with_context(|| format!("in {}", path.display()))
        }
    }
}

/// Refuses to rewrite, as root, files of the data directory that another
/// user owns: the files root made there (a new `tokens.json`, the index)
/// would be root's, and the service, running as that user, could no longer
/// open them; an operator's `sudo openptl token create` would take it down
/// at its next write or start. Only root can do this silently: another
/// user is refused by the files' own permissions. `serve` is not checked
/// (who runs the service is the service's user), nor a file not made yet.
pub fn as_owner_of(files: &[std::path::PathBuf]) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if openptl_log::effective_uid() != 0 {
            return Ok(());
        }
        for file in files {
            let Ok(meta) = std::fs::metadata(file) else {
                continue;
            };
            let owner = meta.uid();
            if owner != 0 {
                let user = match user_name(owner) {
                    Some(name) => name,
                    None => format!("'#{owner}'"),
                };
                anyhow::bail!(
                    "{} belongs to {user}, and this command runs as root: what it rewrote would be root's, and the service, running as {user}, could not open it. Run it as that user (sudo -u {user} openptl …)",
                    file.display(),
                );
            }
        }
    }
    Ok(())
}

/// The login name of `uid` from `/etc/passwd`, if it has one.
#[cfg(unix)]
fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let id: u32 = fields.nth(1)?.parse().ok()?;
        (id == uid).then(|| name.to_string())
    })
}

/// What a failed command prints after "Error: ": the error and each of its
/// causes, each said once. A [`openptl_log::Failure`] already ends its
/// words with its cause's (`segment 3: No space left on device`), so a
/// cause whose words the line before already ends with is not said again
/// (anyhow's own report printed "Error: X: Y / Caused by: Y").
pub fn error_report(error: &anyhow::Error) -> String {
    let mut lines: Vec<String> = Vec::new();
    for cause in error.chain() {
        let words = cause.to_string();
        if lines.last().is_some_and(|said| said.ends_with(&words)) {
            continue;
        }
        lines.push(words);
    }
    let mut report = lines.remove(0);
    for cause in lines {
        report.push_str("\n  caused by: ");
        report.push_str(&cause);
    }
    report
}

#[cfg(test)]
mod tests {
    use anyhow::Context;
    use openptl_log::Failure;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }

    #[test]
    fn a_failed_command_says_each_cause_once() {
        let disk = std::io::Error::new(std::io::ErrorKind::StorageFull, "No space left on device");
        let error = Err::<(), _>(Failure::caused_by("segment 3", disk))
            .context("backing up to /mnt/backup")
            .unwrap_err();
        assert_eq!(
            super::error_report(&error),
            "backing up to /mnt/backup\n  caused by: segment 3: No space left on device"
        );
        let plain = anyhow::anyhow!("no such directory");
        assert_eq!(super::error_report(&plain), "no such directory");
    }
}
