//! Open connections per client address, at most a cap each: shared by the
//! HTTP and gRPC listeners' code (each with a table of its own), so one
//! client cannot take every connection a listener allows. The trust's
//! reverse proxies (`--trusted-proxy`) are not capped per address: every
//! user's connections come through them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};

use crate::auth::ClientKey;
use crate::proxies::TrustedProxies;

/// Open connections per client address by default: a browser opens 6, a
/// busy integration engine a few dozen.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 64;

/// Open connections per client address, at most `cap` each (shared by the
/// HTTP and gRPC listeners' code, each with a table of its own).
pub struct PerClient {
    cap: usize,
    open: Mutex<HashMap<ClientKey, usize>>,
    /// The trust's reverse proxies: each carries every user's connections,
    /// so only the listener's overall cap applies to them.
    exempt: TrustedProxies,
}

/// One connection's place in its client's count, given back when dropped
/// (`None`: a trusted proxy's, not counted).
pub struct ClientSlot {
    table: Arc<PerClient>,
    client: Option<ClientKey>,
}

impl PerClient {
    /// At most `cap` (at least 1) connections per address.
    pub fn new(cap: usize) -> Arc<PerClient> {
        PerClient::exempting(cap, TrustedProxies::none())
    }

    /// At most `cap` connections per address, none counted for `proxies`.
    pub fn exempting(cap: usize, proxies: TrustedProxies) -> Arc<PerClient> {
        Arc::new(PerClient {
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
            exempt: proxies,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection from `peer`, or None at its cap.
    pub fn take(self: &Arc<Self>, peer: SocketAddr) -> Option<ClientSlot> {
        if self.exempt.contains(peer.ip()) {
            return Some(ClientSlot {
                table: self.clone(),
                client: None,
            });
        }
        let client = ClientKey::of(peer.ip());
        let mut open = self.lock();
        let n = open.entry(client).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            client: Some(client),
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(client) = self.client else {
            return;
        };
        let mut open = self.table.lock();
        if let Some(n) = open.get_mut(&client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_is_capped_but_a_trusted_proxy_is_not() {
        let proxies = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let table = PerClient::exempting(2, proxies);
        let client: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let (a, _b) = (table.take(client).unwrap(), table.take(client).unwrap());
        assert!(table.take(client).is_none(), "the third is over the cap");
        drop(a);
        assert!(
            table.take(client).is_some(),
            "a closed one gives its place back"
        );
        let proxy: SocketAddr = "10.0.0.5:1".parse().unwrap();
        let through_proxy: Vec<_> = (0..10).map_while(|_| table.take(proxy)).collect();
        assert_eq!(through_proxy.len(), 10);
        drop(through_proxy);
        assert!(table.lock().get(&ClientKey::of(proxy.ip())).is_none());
    }
}
