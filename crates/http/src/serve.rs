//! The HTTP listener: an accept loop over hyper's HTTP/1.1 connections,
//! instead of `axum::serve`, for the two bounds a slow or greedy client
//! needs (issue 20): a time limit on reading a request's headers (a client
//! that trickles them, or leaves a kept-alive connection idle, is
//! disconnected) and a cap on open connections (beyond it new connections
//! wait in the kernel's accept queue until one closes; they are not
//! refused). Each request carries its peer address (`ConnectInfo`) for the
//! per-address limits. Shutdown stops accepting, lets requests in flight
//! finish and closes idle connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;

/// The listener's bounds (docs/operations.md).
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Longest a client may take to send a request's headers, counted from
    /// when the server starts waiting for them (so also how long a kept-alive
    /// connection may sit idle).
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
}

/// Headers must arrive within this by default.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Open connections by default (each costs a file descriptor and a task).
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves,
/// then waits for the requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
        // A free slot first: at the cap, connections queue in the kernel.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, say: wait a moment, go on.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = connection.await {
                // Timed out reading headers, reset by the client: theirs.
                tracing::debug!(error = %e, %peer, "connection ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
