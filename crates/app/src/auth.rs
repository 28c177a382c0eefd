//! Who presents a secret, for every way in (HTTP, gRPC): the token behind
//! it, each token's request rate, and the failures allowed per client
//! address. A valid secret is never refused by the failure limit (it bounds
//! what failures cost; it must not let one client lock out everyone behind
//! its address), and a real token that has ended (expired, revoked) is not
//! counted as a failure.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::PoisonError;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::access::Principal;
use crate::problem::{ApiError, Limited};
use crate::proxies::TrustedProxies;
use crate::App;

/// Takes one request from the bucket of the token `token_id` at the app's
/// rate limit, or `429 rate_limited`.
pub fn rate_limit(app: &App, token_id: &str) -> Result<(), ApiError> {
    take(token_id, app.rate_limit).map_err(|retry_after| ApiError::RateLimited {
        retry_after,
        why: Limited::Token,
    })
}

fn buckets() -> &'static Mutex<HashMap<String, (f64, Instant)>> {
    static BUCKETS: OnceLock<Mutex<HashMap<String, (f64, Instant)>>> = OnceLock::new();
    BUCKETS.get_or_init(Default::default)
}

/// Takes one request from the token's bucket (`rate` per second, bursts of
/// twice that); the seconds to wait if empty.
fn take(token_id: &str, rate: f64) -> Result<(), u64> {
    if rate <= 0.0 {
        return Ok(());
    }
    let burst = rate * 2.0;
    let mut buckets = buckets().lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    let (tokens, last) = buckets.entry(token_id.to_string()).or_insert((burst, now));
    *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(burst);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        Ok(())
    } else {
        Err(((1.0 - *tokens) / rate).ceil().max(1.0) as u64)
    }
}

/// Failed sign-ins and bearer tokens allowed per client address by
/// default: a burst of this many, then one more every
/// [`DEFAULT_FAILURE_REFILL_SECONDS`].
pub const DEFAULT_FAILURE_BURST: u32 = 30;
/// Seconds for one failure of the allowance to come back.
pub const DEFAULT_FAILURE_REFILL_SECONDS: u32 = 2;
/// Client addresses the failure table remembers at most (about 100 bytes
/// each): beyond it the addresses whose allowance has come back are
/// forgotten first, then the longest quiet that have a failure left; one
/// with none left is never forgotten (new addresses' failures are refused
/// instead while the table is full of them).
pub const FAILURE_TABLE_LIMIT: usize = 10_000;

/// A client address as the failure table keys it: an IPv4 address, or the
/// /64 network of an IPv6 one (one host holds a whole /64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    /// The key of a client whose address is unknown (in-process callers,
    /// tests): they share one allowance.
    pub const UNKNOWN: ClientKey = ClientKey(u128::MAX);

    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(u128::from(u32::from(v4))),
                None => ClientKey(u128::from(v6) & !((1u128 << 64) - 1)),
            },
        }
    }
}

/// Failed authentications per client address: a token bucket each (a burst
/// of `burst` failures, one back every `refill_seconds`), in a table of
/// bounded size. A client whose bucket is empty is answered `429` before its
/// secret is looked at, so guessing runs no faster than the refill.
pub struct FailedAuth {
    burst: f64,
    per_second: f64,
    capacity: usize,
    table: Mutex<HashMap<ClientKey, (f64, Instant)>>,
    /// Whose `X-Forwarded-For` names the client (`--trusted-proxy`).
    proxies: TrustedProxies,
}

impl Default for FailedAuth {
    fn default() -> Self {
        FailedAuth::new(
            DEFAULT_FAILURE_BURST,
            DEFAULT_FAILURE_REFILL_SECONDS,
            FAILURE_TABLE_LIMIT,
        )
    }
}

impl FailedAuth {
    /// `burst` failures (0: no limit), one back every `refill_seconds`, at
    /// most `capacity` addresses remembered.
    pub fn new(burst: u32, refill_seconds: u32, capacity: usize) -> FailedAuth {
        FailedAuth {
            burst: f64::from(burst),
            per_second: 1.0 / f64::from(refill_seconds.max(1)),
            capacity: capacity.max(1),
            table: Mutex::new(HashMap::new()),
            proxies: TrustedProxies::none(),
        }
    }

    /// Counts failures by the client a trusted proxy names in
    /// `X-Forwarded-For` rather than by the proxy ([`TrustedProxies`]).
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> FailedAuth {
        self.proxies = proxies;
        self
    }

    /// The client key of a request from `peer` (None: in process) with
    /// these `X-Forwarded-For` values.
    pub fn client_key(&self, peer: Option<IpAddr>, forwarded_for: Option<&str>) -> ClientKey {
        peer.map_or(ClientKey::UNKNOWN, |peer| {
            ClientKey::of(self.proxies.client(peer, forwarded_for))
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ClientKey, (f64, Instant)>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn seconds_until_one(&self, left: f64) -> u64 {
        ((1.0 - left) / self.per_second).ceil().max(1.0) as u64
    }

    /// Whether `client` has a failure left now (a look: nothing is
    /// counted); else the seconds to wait.
    pub fn check(&self, client: ClientKey) -> Result<(), u64> {
        if self.burst <= 0.0 {
            return Ok(());
        }
        let table = self.lock();
        let Some((left, since)) = table.get(&client) else {
            return Ok(());
        };
        let left = (left + since.elapsed().as_secs_f64() * self.per_second).min(self.burst);
        if left >= 1.0 {
            Ok(())
        } else {
            Err(self.seconds_until_one(left))
        }
    }

    /// Counts a failure of `client` if its allowance has one left (checked
    /// and taken under one lock, so concurrent failures cannot overshoot);
    /// else the seconds to wait, and nothing is counted.
    pub fn fail(&self, client: ClientKey) -> Result<(), u64> {
        if self.burst <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut table = self.lock();
        if table.len() >= self.capacity
            && !table.contains_key(&client)
            && !self.evict(&mut table, now)
        {
            // Full of addresses with no failures left (thousands of them,
            // each spent: an attack from many networks): a new address's
            // failure is refused until one gets a failure back, rather than
            // one of them forgotten and its limit lifted.
            return Err(self.seconds_until_one(0.0));
        }
        let (left, since) = table.entry(client).or_insert((self.burst, now));
        let refilled = self.left((*left, *since), now);
        if refilled < 1.0 {
            return Err(self.seconds_until_one(refilled));
        }
        *left = refilled - 1.0;
        *since = now;
        Ok(())
    }

    /// What is left of an entry's allowance now.
    fn left(&self, (left, since): (f64, Instant), now: Instant) -> f64 {
        (left + now.duration_since(since).as_secs_f64() * self.per_second).min(self.burst)
    }

    /// Makes room, and says whether there is: forgets every address whose
    /// allowance has come back in full (nothing is lost), then, down to
    /// nine tenths of the table, the longest quiet of those with at least
    /// one failure left (forgetting one gives it back at most its burst,
    /// what a new address gets). An address with none left is never
    /// forgotten before it gets one back: forgetting it would lift its
    /// limit.
    fn evict(&self, table: &mut HashMap<ClientKey, (f64, Instant)>, now: Instant) -> bool {
        table.retain(|_, e| self.left(*e, now) < self.burst);
        let target = self.capacity - self.capacity / 10 - 1;
        if table.len() > target {
            let mut quiet: Vec<(Instant, ClientKey)> = table
                .iter()
                .filter(|(_, e)| self.left(**e, now) >= 1.0)
                .map(|(k, (_, since))| (*since, *k))
                .collect();
            quiet.sort_unstable_by_key(|(since, _)| *since);
            let excess = table.len() - target;
            for (_, key) in quiet.iter().take(excess) {
                table.remove(key);
            }
        }
        table.len() < self.capacity
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Who presents `secret` (a bearer token), after the token's rate limit:
/// the one check every way in (HTTP, gRPC) makes. A presented secret that
/// is no token's counts as a failure of `client` ([`check_secret`]); no
/// secret at all does not (it guesses nothing).
pub fn authenticate(
    app: &App,
    failures: &FailedAuth,
    client: ClientKey,
    secret: Option<&str>,
) -> Result<Principal, ApiError> {
    let secret = secret.ok_or(ApiError::Unauthenticated)?;
    let record = check_secret(app, failures, client, secret)?;
    rate_limit(app, &record.id)?;
    Ok(record.principal(&app.config.alliances))
}

/// The token record behind `secret`. A valid secret is always accepted,
/// whatever `client`'s failures: checking one costs a hash, and a 256-bit
/// secret is not guessed. A secret that is no token's counts as a failure
/// of `client`: `401`, or `429 rate_limited` once its allowance is spent.
/// A real token that has ended (expired, revoked: a dashboard left open, a
/// script with an old token) is `401` and not counted, so it cannot use up
/// the allowance of everyone behind the same address.
pub fn check_secret(
    app: &App,
    failures: &FailedAuth,
    client: ClientKey,
    secret: &str,
) -> Result<crate::tokens::TokenRecord, ApiError> {
    use crate::tokens::Refusal;
    match app.tokens.check_secret(secret, app.clock.now()) {
        Ok(record) => Ok(record),
        Err(Refusal::Ended) => Err(ApiError::Unauthenticated),
        Err(Refusal::Unknown) => match failures.fail(client) {
            Ok(()) => Err(ApiError::Unauthenticated),
            Err(retry_after) => Err(ApiError::RateLimited {
                retry_after,
                why: Limited::FailedSignIns,
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn failures_run_out_and_the_table_stays_bounded() {
        let limiter = FailedAuth::new(3, 60, 100);
        let client = ClientKey::of("192.0.2.1".parse().unwrap());
        for _ in 0..3 {
            assert_eq!(limiter.check(client), Ok(()));
            assert_eq!(limiter.fail(client), Ok(()));
        }
        let wait = limiter.check(client).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        let wait = limiter.fail(client).unwrap_err();
        assert!((1..=60).contains(&wait), "{wait}");
        // Another address is not affected.
        assert!(limiter
            .check(ClientKey::of("192.0.2.2".parse().unwrap()))
            .is_ok());
        // One IPv6 host is its /64.
        let a = ClientKey::of("2001:db8::1".parse().unwrap());
        let b = ClientKey::of("2001:db8::ffff:1".parse().unwrap());
        assert_eq!(a, b);
        // Many addresses never grow the table past its capacity...
        for i in 0..10_000u32 {
            let _ = limiter.fail(ClientKey::of(IpAddr::V4(std::net::Ipv4Addr::from(i))));
        }
        assert!(limiter.len() <= 100, "{}", limiter.len());
        // ...nor make it forget an address that has no failure left.
        assert!(limiter.fail(client).is_err());
    }

    #[test]
    fn a_table_full_of_spent_addresses_refuses_new_ones() {
        let limiter = FailedAuth::new(1, 60, 10);
        for i in 0..10u32 {
            let key = ClientKey::of(IpAddr::V4(std::net::Ipv4Addr::from(i)));
            assert_eq!(limiter.fail(key), Ok(()));
        }
        let new = ClientKey::of("198.51.100.1".parse().unwrap());
        assert!(limiter.fail(new).is_err());
        assert_eq!(limiter.len(), 10);
        for i in 0..10u32 {
            let key = ClientKey::of(IpAddr::V4(std::net::Ipv4Addr::from(i)));
            assert!(limiter.fail(key).is_err());
        }
    }

    #[test]
    fn concurrent_failures_never_overshoot_the_burst() {
        let limiter = Arc::new(FailedAuth::new(30, 600, 100));
        let client = ClientKey::of("192.0.2.3".parse().unwrap());
        let counted: usize = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..8)
                .map(|_| {
                    let limiter = limiter.clone();
                    scope.spawn(move || (0..100).filter(|_| limiter.fail(client).is_ok()).count())
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap()).sum()
        });
        assert_eq!(counted, 30);
    }
}
