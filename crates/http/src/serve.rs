//! The HTTP listener: an accept loop over hyper's HTTP/1.1 connections,
//! instead of `axum::serve`, for the bounds a slow or greedy client needs
//! (issue 20): a time limit on reading a request's headers (a client that
//! trickles them, or leaves a kept-alive connection idle, is disconnected),
//! a cap on open connections, and a cap per client address so one client
//! cannot hold them all. At the cap, a new connection waits (it is not
//! refused) while the open ones are asked to close: idle kept-alive ones at
//! once, busy ones after the request in flight ([`Pressure`]), so a probe
//! never waits behind connections a client merely keeps. Each request
//! carries its peer address (`ConnectInfo`) for the per-address limits.
//! Shutdown stops accepting, lets requests in flight finish and closes idle
//! connections.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use openptl_app::proxies::TrustedProxies;

pub use openptl_app::connections::{ClientSlot, PerClient, DEFAULT_MAX_CONNECTIONS_PER_CLIENT};

/// The listener's bounds (docs/operations.md).
#[derive(Debug, Clone)]
pub struct ServeLimits {
    /// Longest a client may take to send a request's headers, counted from
    /// when the server starts waiting for them (so also how long a kept-alive
    /// connection may sit idle).
    pub header_read_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Connections open at once from one client address (an IPv4 address,
    /// or an IPv6 /64); more are closed as soon as they are accepted.
    /// Behind a reverse proxy every client has the proxy's address: name
    /// the proxy in `trusted_proxies` (or raise this to `max_connections`)
    /// and limit per user at the proxy.
    pub max_connections_per_client: usize,
    /// The trust's reverse proxies: not capped per address.
    pub trusted_proxies: TrustedProxies,
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
            max_connections_per_client: DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
            trusted_proxies: TrustedProxies::none(),
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
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    let per_client = PerClient::exempting(
        limits.max_connections_per_client,
        limits.trusted_proxies.clone(),
    );
    // Open connections close (after the request in flight) when this
    // changes: `true` at shutdown, a bump of `pressure` at the cap.
    let (stop_tx, _) = watch::channel(false);
    let (pressure_tx, _) = watch::channel(0u64);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(shutdown);
    loop {
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
        // One client holding its share already: closed at once.
        let Some(client_slot) = per_client.take(peer) else {
            tracing::debug!(%peer, "connection closed: the client holds as many as it may");
            drop(stream);
            continue;
        };
        // A free slot; at the cap, the open connections are asked to close
        // (idle ones at once) and this one waits for the first to go. The
        // connections behind it wait in the kernel's accept queue.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                pressure_tx.send_modify(|n| *n += 1);
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let mut stop = stop_tx.subscribe();
        let mut pressure = pressure_tx.subscribe();
        tokio::spawn(async move {
            let (_slot, _client_slot) = (slot, client_slot);
            tokio::pin!(connection);
            let mut closing = false;
            loop {
                tokio::select! {
                    ended = connection.as_mut() => {
                        if let Err(e) = ended {
                            // Timed out reading headers, reset by the client: theirs.
                            tracing::debug!(error = %e, %peer, "connection ended");
                        }
                        return;
                    }
                    _ = stop.wait_for(|stopped| *stopped), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                    _ = pressure.changed(), if !closing => {
                        connection.as_mut().graceful_shutdown();
                        closing = true;
                    }
                }
            }
        });
    }
    drop(listener);
    stop_tx.send_replace(true);
    // Every connection gives its slot back when it ends.
    let _ = slots.acquire_many(max as u32).await;
}
