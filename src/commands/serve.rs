//! `openptl serve`: builds the [`Server`], prints the lines operators and
//! scripts read (the gRPC and HTTP addresses, the demo login), and runs it
//! until SIGINT or SIGTERM.

use crate::server::{Options, Server};

/// Runs the service until a signal (or damage to the log) stops it.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let demo = options.demo.is_some();
    // Before the start-up fold, which may take minutes: a logrotate SIGHUP
    // meanwhile must not end the process (SIGHUP's default).
    let hangup = hangup_signal();
    let server = Server::build(options).await?;
    let addr = server.http_addr()?;
    let shutdown = shutdown_signal();
    reopen_on_hangup(hangup, server.app().clone());
    if let Some(bound) = server.grpc_addr() {
        println!("OpenPTL gRPC listening on http://{}", bound?);
    }
    if let Some(secret) = server.demo_login() {
        // Before the "listening" line, which scripts wait for.
        println!("Demo login (a coordinator of the six demo trusts, valid 30 days): {secret}");
    }
    // Scripts and tests read this line to find the port.
    println!("OpenPTL listening on http://{addr}");
    if demo && server.demo_login().is_some() {
        println!(
            "Dashboard: http://{addr}/ (sign in with the demo login above). API: curl -H 'Authorization: Bearer <token>' http://{addr}/v1/ptl"
        );
    }
    server.run(shutdown).await
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

/// SIGHUP, handled from now on (its default would end the process).
#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = ();

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::hangup()).ok()
    }
}

/// On SIGHUP (what logrotate sends after moving a log away), reopens the
/// access log, rather than ending the process as SIGHUP's default does.
fn reopen_on_hangup(hangup: Hangup, app: std::sync::Arc<openptl_app::App>) {
    #[cfg(unix)]
    {
        let Some(mut hangup) = hangup else {
            tracing::warn!("SIGHUP could not be handled: rotate the access log with copytruncate");
            return;
        };
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                match app.access_log().reopen() {
                    Ok(()) => tracing::info!("SIGHUP: the access log was reopened"),
                    Err(e) => {
                        tracing::error!(error = %e, "SIGHUP: the access log could not be reopened; entries go to the file it had")
                    }
                }
            }
        });
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
