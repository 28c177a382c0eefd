//! The service as a library: [`Server::build`] opens the data directory,
//! builds the projection and binds the HTTP and gRPC listeners (port 0
//! picks a free port, read back with [`Server::http_addr`]); [`Server::run`]
//! serves until its shutdown future resolves or the log reports damage, then
//! anchors the head and writes the projection snapshot. `openptl serve`
//! (`commands/serve.rs`) adds the signals and the lines scripts read; tests
//! can run it in-process (after zero2prod's `Application::build` and
//! mini-redis's `server::run(listener, shutdown)`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use openptl_app::anchoring::Anchorer;
use openptl_app::projection::SnapshotPreload;
use openptl_app::{App, SystemClock};
use openptl_log::segment::SegmentLog;
use openptl_log::EventLog;
use openptl_rules::RulesConfig;
use tokio::net::TcpListener;

use crate::demo;
use crate::open::{catch_up, SNAPSHOT_FILE};

/// The actor of the events the demo loads.
const DEMO_LOADER: &str = "demo-loader";

/// Everything `serve` is started with (`cli::ServeArgs` checked).
pub struct Options {
    pub rules: RulesConfig,
    /// Where the log (unless `listen.store`), tokens, access log and
    /// snapshot live.
    pub data_dir: PathBuf,
    pub listen: Listen,
    /// Load the synthetic alliance of this many pathways into an empty log.
    pub demo: Option<usize>,
    /// Create (once) an admin token with this secret at start-up.
    pub bootstrap_admin_token: Option<String>,
    /// Requests per second each token may sustain (0: no limit).
    pub rate_limit: f64,
    pub limits: Limits,
}

/// Where `serve` listens, and where its log is.
pub struct Listen {
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    /// A PostgreSQL URL and schema; `None`: the segment log in the data directory.
    pub store: Option<(String, String)>,
    /// Where `POST /v1/backup` writes (`--backup-to`).
    pub backup_to: Option<PathBuf>,
    /// Where the log's anchors go, and how often (`None`: no anchors).
    pub anchoring: Option<Anchoring>,
}

/// What `serve` bounds under abuse and overload (docs/operations.md).
pub struct Limits {
    /// Failed authentications per client address before 429 (0: no limit).
    pub auth_failure_burst: u32,
    /// Whose `X-Forwarded-For` names the client (`--trusted-proxy`).
    pub trusted_proxies: openptl_app::proxies::TrustedProxies,
    /// Past-date views that may wait while one runs.
    pub past_view_queue: usize,
    /// The HTTP listener's (header read timeout, open connections).
    pub http: openptl_http::ServeLimits,
    /// The gRPC server's.
    pub grpc: openptl_grpc::Limits,
}

/// Where and how often `serve` anchors the log's hash chain (issue 27).
pub struct Anchoring {
    pub path: PathBuf,
    pub every: std::time::Duration,
}

/// A service with its projection built and its listeners bound, not yet
/// serving.
pub struct Server {
    app: Arc<App>,
    listener: TcpListener,
    grpc_listener: Option<TcpListener>,
    anchorer: Option<(Arc<Anchorer>, std::time::Duration)>,
    /// One table of failed authentications per client address, shared by
    /// HTTP and gRPC.
    failures: Arc<openptl_http::FailedAuth>,
    limits: Limits,
    demo_login: Option<String>,
}

impl Server {
    /// Opens the data directory (and the log, there or in PostgreSQL),
    /// creates the bootstrap and demo tokens, folds the whole log into the
    /// projection (loading the demo alliance into an empty log), and binds
    /// the listeners.
    pub async fn build(options: Options) -> anyhow::Result<Server> {
        use openptl_app::access::{Principal, Role};
        use openptl_app::tokens::{NewToken, TokenStore};
        let Options {
            rules: config,
            data_dir,
            listen,
            demo,
            bootstrap_admin_token,
            rate_limit,
            limits,
        } = options;
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
        // A demo login only where the demo lives: an empty log (the demo is
        // loaded below) or one the demo loader began. `--demo` on a data
        // directory holding real pathways once minted a 30-day coordinator
        // token for the demo trusts in its tokens file.
        let demo_here = match demo {
            Some(_) if log.head() > 0 => {
                let first = log
                    .read_all(1, 1)
                    .await
                    .context("reading the log's first event")?;
                let demo_log = first.first().is_some_and(|r| r.actor == DEMO_LOADER);
                if !demo_log {
                    tracing::warn!(
                        "--demo: this data directory holds a log the demo did not write; no demo data is loaded and no demo login is made"
                    );
                }
                demo_log
            }
            Some(_) => true,
            None => false,
        };
        let demo_login = match demo.filter(|_| demo_here) {
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
            if app.log().head() == 0 {
                let loaded = demo::load(&app, pathways, &Principal::system(DEMO_LOADER)).await?;
                tracing::info!(events = loaded, pathways, "demo alliance loaded");
            }
        }
        tokio::spawn(openptl_app::forecast::refresh_periodically(Arc::downgrade(
            &app,
        )));
        let anchorer = listen.anchoring.map(|a| {
            (
                Arc::new(openptl_app::anchoring::Anchorer::new(&a.path)),
                a.every,
            )
        });
        let failures = Arc::new(
            openptl_http::FailedAuth::new(
                limits.auth_failure_burst,
                openptl_http::auth::DEFAULT_FAILURE_REFILL_SECONDS,
                openptl_http::auth::FAILURE_TABLE_LIMIT,
            )
            .with_trusted_proxies(limits.trusted_proxies.clone()),
        );
        let listener = TcpListener::bind(listen.http)
            .await
            .with_context(|| format!("binding {}", listen.http))?;
        let grpc_listener = match listen.grpc {
            Some(grpc_addr) => Some(
                TcpListener::bind(grpc_addr)
                    .await
                    .with_context(|| format!("binding {grpc_addr} for gRPC"))?,
            ),
            None => None,
        };
        Ok(Server {
            app,
            listener,
            grpc_listener,
            anchorer,
            failures,
            limits,
            demo_login,
        })
    }

    /// Where the HTTP API listens.
    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Where the gRPC API listens (`None`: `--grpc-listen off`).
    pub fn grpc_addr(&self) -> Option<std::io::Result<SocketAddr>> {
        self.grpc_listener.as_ref().map(TcpListener::local_addr)
    }

    /// The secret of the demo coordinator's token (with `--demo`).
    pub fn demo_login(&self) -> Option<&str> {
        self.demo_login.as_deref()
    }

    /// The application the server serves.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// Serves HTTP and gRPC until `shutdown` resolves or the log reports
    /// damage; in-flight requests finish. Then anchors the head and writes
    /// the projection snapshot for the next start. An error when gRPC
    /// stopped abnormally or the log is damaged.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            app,
            listener,
            grpc_listener,
            anchorer,
            failures,
            limits,
            demo_login: _,
        } = self;
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
        tokio::spawn(write_waiting_access_lines(app.clone(), stop.clone()));
        if let Some((anchorer, every)) = &anchorer {
            tokio::spawn(openptl_app::anchoring::run(
                app.clone(),
                anchorer.clone(),
                *every,
                stop.clone(),
            ));
        }
        let grpc = grpc_listener.map(|grpc_listener| {
            tokio::spawn(openptl_grpc::serve(
                app.clone(),
                failures.clone(),
                limits.grpc,
                grpc_listener,
                stop.clone(),
            ))
        });
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
        if let Some(damage) = app.log().damage() {
            // No snapshot of a projection folded from an altered history.
            anyhow::bail!("the event log is damaged: {damage}. Restore the segments from a backup, then run `openptl verify`; the service starts again once it reports OK");
        }
        if let Some((anchorer, _)) = &anchorer {
            // The head after the last append, anchored before the process ends.
            anchorer.anchor_logged(&app).await;
        }
        // Access log lines that waited for a full disk, written now if they
        // can be: past this they would be lost (decision 194).
        let left = app.access_log().write_waiting();
        if left > 0 {
            tracing::error!(
                bytes = left,
                "access log lines could not be written before the stop and are lost"
            );
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
}

/// Every few seconds, writes the access log lines that wait for a full
/// disk (decision 194), so they reach the file once space returns even if
/// nobody reads patient data then.
async fn write_waiting_access_lines(
    app: std::sync::Arc<App>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut waited = false;
    loop {
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        let left = app.access_log().write_waiting();
        if waited && left == 0 {
            tracing::info!("the access log lines that waited are written");
        }
        waited = left > 0;
    }
}

/// Resolves with the damage once the log reports some (its background
/// hash-chain check, decision 67): the service then stops, as EventStoreDB
/// does when a chunk fails its background verification.
async fn log_damage(app: &App) -> String {
    loop {
        if let Some(damage) = app.log().damage() {
            return damage;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The options of a server on port 0 with a fresh data directory.
    fn options(data_dir: PathBuf) -> Options {
        Options {
            rules: RulesConfig::defaults(),
            data_dir,
            listen: Listen {
                http: "127.0.0.1:0".parse().unwrap(),
                grpc: None,
                store: None,
                backup_to: None,
                anchoring: None,
            },
            demo: None,
            bootstrap_admin_token: Some("in-process-admin-token".into()),
            rate_limit: 0.0,
            limits: Limits {
                auth_failure_burst: 0,
                trusted_proxies: openptl_app::proxies::TrustedProxies::none(),
                past_view_queue: openptl_app::DEFAULT_PAST_VIEW_QUEUE,
                http: openptl_http::ServeLimits::default(),
                grpc: openptl_grpc::Limits::default(),
            },
        }
    }

    /// The status of `GET path` with the admin token.
    async fn get(addr: SocketAddr, path: &str) -> u16 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer in-process-admin-token\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response[9..12].parse().unwrap()
    }

    #[tokio::test]
    async fn a_server_built_on_port_0_serves_until_its_shutdown_resolves() {
        let dir = std::env::temp_dir().join(format!("openptl-server-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let server = Server::build(options(dir.clone())).await.unwrap();
        let addr = server.http_addr().unwrap();
        assert_ne!(addr.port(), 0);
        assert!(server.grpc_addr().is_none());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        assert_eq!(get(addr, "/readyz").await, 200);
        assert_eq!(get(addr, "/v1/ptl").await, 200);
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
