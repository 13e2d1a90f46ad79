//! The client's address behind a reverse proxy. `X-Forwarded-For` or `Forwarded` (RFC 7239
//! `for=`) is believed only when the TCP peer is one of the configured `trusted_proxies`:
//! anyone else could write any address there and pick the throttle key they are counted on.
//! Of the addresses listed, the right-most one that is not itself a trusted proxy is the
//! client: proxies append, so everything left of the first hop we do not trust may be forged.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// An address block: `192.0.2.0/24`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().ok()?;
        let net = net.to_canonical();
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Cidr { net, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// Which header the trusted proxies write. Only that one is read: a proxy passes the other
/// through as the client sent it, so reading both would let a client forge its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies {
    pub proxies: Vec<Cidr>,
    pub header: ForwardedHeader,
}

impl Default for TrustedProxies {
    fn default() -> Self {
        TrustedProxies {
            proxies: Vec::new(),
            header: ForwardedHeader::XForwardedFor,
        }
    }
}

impl TrustedProxies {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.proxies.iter().any(|c| c.contains(ip))
    }

    /// The client's address for a request that came from `peer` with `headers`. Port 0
    /// when the proxy named none. An entry that is no address (`unknown`, an obfuscated
    /// `_name`, garbage) ends the walk at the proxy that wrote it: that proxy is then the
    /// best-known client.
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
        if !self.trusts(peer.ip()) {
            return peer;
        }
        let entries: Vec<&str> = match self.header {
            ForwardedHeader::XForwardedFor => headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .collect(),
            ForwardedHeader::Forwarded => headers
                .get_all("forwarded")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .filter_map(for_parameter)
                .collect(),
        };
        let mut client = peer;
        for entry in entries.iter().rev() {
            match node(entry) {
                Some(addr) if self.trusts(addr.ip()) => client = addr,
                Some(addr) => return addr,
                None => return client,
            }
        }
        client
    }
}

/// The `for=` value of one `Forwarded` element (`for=192.0.2.1;proto=https`), unquoted.
fn for_parameter(element: &str) -> Option<&str> {
    element.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("for")
            .then(|| v.trim().trim_matches('"'))
    })
}

/// `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`.
fn node(s: &str) -> Option<SocketAddr> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Some(SocketAddr::new(a.ip().to_canonical(), a.port()));
    }
    let bare = s
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(s);
    bare.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip.to_canonical(), 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str], header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies {
            proxies: list.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
            header,
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cidrs_parse_and_match() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.255.3".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("198.51.100.1".parse().unwrap()));
        assert_eq!(
            Cidr::parse("127.0.0.1").unwrap().to_string(),
            "127.0.0.1/32"
        );
        for bad in ["10.0.0.0/33", "::/129", "example.org", "10.0.0.0/x", ""] {
            assert_eq!(Cidr::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let t = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let peer: SocketAddr = "192.0.2.9:5000".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "198.51.100.7")]);
        assert_eq!(t.client(peer, &h), peer);
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let t = proxies(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        // The client forged the first entry; the second proxy appended the first proxy.
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.66, 198.51.100.7"),
            ("x-forwarded-for", "10.0.0.2"),
        ]);
        assert_eq!(t.client(peer, &h).to_string(), "198.51.100.7:0");
        // No header: the proxy itself.
        assert_eq!(t.client(peer, &HeaderMap::new()), peer);
        // An entry that is no address stops at the proxy that wrote it.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown, 10.0.0.2")]);
        assert_eq!(t.client(peer, &h).to_string(), "10.0.0.2:0");
        // A port and IPv6 keep the `ip:port` / `[ipv6]:port` form the throttles parse.
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:4711")]);
        assert_eq!(t.client(peer, &h).to_string(), "[2001:db8::7]:4711");
    }

    #[test]
    fn forwarded_for_parameters_are_read_when_configured_and_x_forwarded_for_is_not() {
        let t = proxies(&["127.0.0.1"], ForwardedHeader::Forwarded);
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.66"),
            (
                "forwarded",
                "for=203.0.113.1, for=\"[2001:db8:cafe::17]:4711\";proto=https",
            ),
        ]);
        assert_eq!(t.client(peer, &h).to_string(), "[2001:db8:cafe::17]:4711");
        let h = headers(&[("forwarded", "proto=https;For=192.0.2.60")]);
        assert_eq!(t.client(peer, &h).to_string(), "192.0.2.60:0");
    }
}
