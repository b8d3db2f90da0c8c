//! IP networks (CIDR) for the account IP allowlist: parsing, canonical form, membership.

use std::net::IpAddr;

/// An IPv4 or IPv6 network, kept with its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNetwork {
    addr: IpAddr,
    prefix: u8,
}

impl IpNetwork {
    /// `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one host). Host bits set below the
    /// prefix are refused (`10.0.0.1/8` is ambiguous: a typo or a network?).
    pub fn parse(s: &str) -> Result<IpNetwork, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s:?} is not an IPv4 or IPv6 network (CIDR)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0 to {max}"))?,
        };
        let n = IpNetwork { addr, prefix };
        if n.masked(addr) != addr {
            return Err(format!(
                "{s:?} has host bits set; did you mean {}?",
                IpNetwork {
                    addr: n.masked(addr),
                    prefix
                }
            ));
        }
        Ok(n)
    }

    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v) => {
                let bits = u32::from(v);
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((bits & mask).into())
            }
            IpAddr::V6(v) => {
                let bits = u128::from(v);
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((bits & mask).into())
            }
        }
    }

    /// True for an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    /// True for a single address (`/32`, `/128`).
    pub fn is_host(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// True when every address of this network is in `outer`.
    pub fn within(&self, outer: &IpNetwork) -> bool {
        self.prefix >= outer.prefix && outer.contains(self.addr)
    }

    /// Whether `ip` is in the network (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        ip.is_ipv4() == self.addr.is_ipv4() && self.masked(ip) == self.addr
    }
}

impl std::fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::IpNetwork;

    fn ip(s: &str) -> std::net::IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn networks_parse_to_a_canonical_form_and_refuse_ambiguity() {
        assert_eq!(
            IpNetwork::parse("10.0.0.0/8").map(|n| n.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!(
            IpNetwork::parse(" 192.0.2.7 ").map(|n| n.to_string()),
            Ok("192.0.2.7/32".into())
        );
        assert_eq!(
            IpNetwork::parse("2001:DB8::/32").map(|n| n.to_string()),
            Ok("2001:db8::/32".into())
        );
        assert_eq!(
            IpNetwork::parse("0.0.0.0/0").map(|n| n.to_string()),
            Ok("0.0.0.0/0".into())
        );
        let e = IpNetwork::parse("10.0.0.1/8").expect_err("host bits");
        assert!(e.contains("did you mean 10.0.0.0/8"), "{e}");
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(IpNetwork::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn membership_follows_the_prefix_and_maps_ipv4_in_ipv6() {
        let n = IpNetwork::parse("192.0.2.0/24").expect("net");
        assert!(n.contains(ip("192.0.2.0")) && n.contains(ip("192.0.2.255")));
        assert!(!n.contains(ip("192.0.3.0")) && !n.contains(ip("2001:db8::1")));
        assert!(n.contains(ip("::ffff:192.0.2.9")), "IPv4-mapped IPv6");
        assert!(IpNetwork::parse("0.0.0.0/0")
            .expect("all")
            .contains(ip("203.0.113.1")));
        let v6 = IpNetwork::parse("2001:db8::/32").expect("net");
        assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(IpNetwork::parse("127.0.0.1")
            .expect("host")
            .contains(ip("127.0.0.1")));
    }
}
