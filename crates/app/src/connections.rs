//! Open connections per client address, at most a cap each: shared by the
//! HTTP and gRPC listeners' code (each with a table of its own), so one
//! client cannot take every connection a listener allows.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::PoisonError;
use std::sync::{Arc, Mutex};

use crate::auth::ClientKey;

/// Open connections per client address by default: a browser opens 6, a
/// busy integration engine a few dozen.
pub const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 64;

/// Open connections per client address, at most `cap` each (shared by the
/// HTTP and gRPC listeners' code, each with a table of its own).
pub struct PerClient {
    cap: usize,
    open: Mutex<HashMap<ClientKey, usize>>,
}

/// One connection's place in its client's count, given back when dropped.
pub struct ClientSlot {
    table: Arc<PerClient>,
    client: ClientKey,
}

impl PerClient {
    /// At most `cap` (at least 1) connections per address.
    pub fn new(cap: usize) -> Arc<PerClient> {
        Arc::new(PerClient {
            cap: cap.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, usize>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for one more connection from `peer`, or None at its cap.
    pub fn take(self: &Arc<Self>, peer: SocketAddr) -> Option<ClientSlot> {
        let client = ClientKey::of(peer.ip());
        let mut open = self.lock();
        let n = open.entry(client).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(ClientSlot {
            table: self.clone(),
            client,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}
