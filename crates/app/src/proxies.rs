//! Trusted reverse proxies: which client a request comes from when it
//! arrives through the trust's own proxy or ingress.
//!
//! Behind a proxy every request has the proxy's address, so the limits per
//! client address (failed sign-ins) would make every user one client: three
//! wrong passwords from anyone would lock everyone out. A proxy names the
//! client in `X-Forwarded-For`, but any client can send that header too, so
//! it is believed only as far as the chain of hops is made of proxies the
//! operator named (`--trusted-proxy`): reading from the right (the hop
//! nearest OpenPTL), the first address that is not a trusted proxy is the
//! client. A client can put anything to the left of that; it cannot change
//! what its own proxy appended. With no trusted proxies, the peer address is
//! the client, as before.

use std::net::IpAddr;

/// An entry of `--trusted-proxy` that is not an address or network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or network (such as 10.0.0.0/8 or fd00::/8)")]
pub struct NotANetwork(String);

/// The proxies whose `X-Forwarded-For` is believed: networks given as
/// `address/prefix` or single addresses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    networks: Vec<(IpAddr, u8)>,
}

impl TrustedProxies {
    /// None: the peer is always the client.
    pub fn none() -> TrustedProxies {
        TrustedProxies::default()
    }

    /// Parses a comma-separated list such as `10.0.0.0/8, 192.168.1.5,
    /// fd00::/8`; the error names the entry that is not a network.
    pub fn parse(list: &str) -> Result<TrustedProxies, NotANetwork> {
        let mut networks = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            networks.push(parse_network(entry).ok_or_else(|| NotANetwork(entry.to_string()))?);
        }
        Ok(TrustedProxies { networks })
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.networks
            .iter()
            .any(|&(network, prefix)| within(ip, network, prefix))
    }

    /// The client of a request from `peer` carrying `forwarded_for` (every
    /// `X-Forwarded-For` value, in order, joined by commas).
    pub fn client(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let mut client = peer;
        if !self.contains(peer) {
            return client;
        }
        let Some(forwarded_for) = forwarded_for else {
            return client;
        };
        for hop in forwarded_for.rsplit(',') {
            match parse_hop(hop.trim()) {
                // An address the proxy wrote: the client, unless it is a
                // proxy in turn.
                Some(ip) => {
                    client = ip;
                    if !self.contains(ip) {
                        break;
                    }
                }
                // Not an address: nothing left of it can be believed; the
                // last trusted hop is all that is known.
                None => break,
            }
        }
        client
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn parse_network(entry: &str) -> Option<(IpAddr, u8)> {
    let (address, prefix) = match entry.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix.parse::<u8>().ok()?)),
        None => (entry, None),
    };
    let ip: IpAddr = address.parse().ok()?;
    let ip = canonical(ip);
    let bits = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(bits);
    (prefix <= bits).then_some((ip, prefix))
}

/// One hop of `X-Forwarded-For`: an address, perhaps with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = hop.strip_prefix('[') {
        let (address, _) = rest.split_once(']')?;
        return address.parse().ok().map(canonical);
    }
    let (address, port) = hop.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    address.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn within(ip: IpAddr, network: IpAddr, prefix: u8) -> bool {
    match (ip, network) {
        (IpAddr::V4(ip), IpAddr::V4(network)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(network) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(network)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(network) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_match() {
        let trusted = TrustedProxies::parse("10.0.0.0/8, 192.168.1.5,fd00::/8").unwrap();
        for (address, expected) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("192.168.1.5", true),
            ("192.168.1.6", false),
            ("fd12::1", true),
            ("fe80::1", false),
            ("::ffff:10.9.9.9", true),
        ] {
            assert_eq!(trusted.contains(ip(address)), expected, "{address}");
        }
        assert!(TrustedProxies::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("203.0.113.1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        for bad in [
            "10.0.0.0/33",
            "proxy.trust.nhs.uk",
            "10.0.0/8",
            "::/129",
            "10.0.0.1/x",
        ] {
            let error = TrustedProxies::parse(bad).unwrap_err().to_string();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn the_client_is_the_first_hop_from_the_right_that_is_not_a_proxy() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let proxy = ip("10.0.0.5");
        for (forwarded_for, client) in [
            // One proxy: the address it appended.
            (Some("198.51.100.7"), "198.51.100.7"),
            // A client's own X-Forwarded-For is to the left: ignored.
            (Some("203.0.113.9, 198.51.100.7"), "198.51.100.7"),
            // Two proxies of the trust in a row.
            (Some("198.51.100.7, 10.0.0.9"), "198.51.100.7"),
            // Ports and brackets.
            (Some("198.51.100.7:4711"), "198.51.100.7"),
            (Some("[2001:db8::1]:4711"), "2001:db8::1"),
            (Some("2001:db8::2"), "2001:db8::2"),
            // Garbage where the proxy's hop should be: the proxy is all we know.
            (Some("198.51.100.7, unknown"), "10.0.0.5"),
            (Some(""), "10.0.0.5"),
            // Every hop a proxy: the leftmost.
            (Some("10.0.0.7, 10.0.0.9"), "10.0.0.7"),
            (None, "10.0.0.5"),
        ] {
            assert_eq!(
                trusted.client(proxy, forwarded_for),
                ip(client),
                "{forwarded_for:?}"
            );
        }
        // From anyone else the header is not believed.
        assert_eq!(
            trusted.client(ip("192.0.2.1"), Some("198.51.100.7")),
            ip("192.0.2.1")
        );
        assert_eq!(
            TrustedProxies::none().client(proxy, Some("198.51.100.7")),
            proxy
        );
    }
}
