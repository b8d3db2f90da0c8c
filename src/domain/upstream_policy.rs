//! Where a workspace's upstream may point. Binding an arbitrary address is an operator's power
//! (the gateway then makes requests there for anyone with a key): account Owners and Admins may
//! bind only inside the networks and ports the operator lists (`upstream_networks`); site admins
//! and the CLI may bind anywhere else; and a few kinds of address are reachable by nobody unless
//! an entry names them specifically — Atrium's own listener, link-local and cloud-metadata
//! addresses. Unspecified, broadcast and multicast addresses never are. The same check runs when
//! a binding is saved (on the literal address or each address the name resolves to) and at every
//! connection, on the address actually connected to (so DNS rebinding cannot move an upstream).
//! Pure: no I/O.

use super::ipnet::IpNetwork;
use std::net::{IpAddr, SocketAddr};

/// One `upstream_networks` entry: a network and a port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamNetwork {
    net: IpNetwork,
    ports: (u16, u16),
}

impl UpstreamNetwork {
    /// `10.0.0.0/8` (every port), `10.1.2.3:4200`, `10.0.0.0/8:4200-4299`, `[fd00::/8]:4200`
    /// (IPv6 with ports in brackets), `fd00::/8`.
    pub fn parse(s: &str) -> Result<UpstreamNetwork, String> {
        let s = s.trim();
        let bad = |why: &str| format!("upstream network {s:?}: {why}");
        let (net, ports) = if let Some(rest) = s.strip_prefix('[') {
            let (net, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("a '[' without its ']'"))?;
            match after {
                "" => (net, None),
                p => (
                    net,
                    Some(
                        p.strip_prefix(':')
                            .ok_or_else(|| bad("write ports as [NETWORK]:PORTS"))?,
                    ),
                ),
            }
        } else if IpNetwork::parse(s).is_ok() {
            (s, None)
        } else {
            match s.rsplit_once(':') {
                Some((n, p)) if !n.contains(':') => (n, Some(p)),
                _ => (s, None),
            }
        };
        let net = IpNetwork::parse(net).map_err(|e| bad(&e))?;
        let ports = match ports {
            None => (1, u16::MAX),
            Some(p) => {
                let port = |x: &str| {
                    x.parse::<u16>()
                        .ok()
                        .filter(|p| *p > 0)
                        .ok_or_else(|| bad("ports are 1 to 65535, as PORT or FIRST-LAST"))
                };
                let (a, b) = match p.split_once('-') {
                    Some((a, b)) => (port(a)?, port(b)?),
                    None => (port(p)?, port(p)?),
                };
                if a > b {
                    return Err(bad("the first port of a range must not exceed the last"));
                }
                (a, b)
            }
        };
        Ok(UpstreamNetwork { net, ports })
    }

    fn covers(&self, a: SocketAddr) -> bool {
        self.net.contains(a.ip()) && (self.ports.0..=self.ports.1).contains(&a.port())
    }
}

impl std::fmt::Display for UpstreamNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.ports, self.net.is_ipv4()) {
            ((1, u16::MAX), _) => write!(f, "{}", self.net),
            ((a, b), v4) => {
                let net = if v4 {
                    self.net.to_string()
                } else {
                    format!("[{}]", self.net)
                };
                if a == b {
                    write!(f, "{net}:{a}")
                } else {
                    write!(f, "{net}:{a}-{b}")
                }
            }
        }
    }
}

/// Who is binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binder {
    /// A site admin, or the CLI on the server's machine.
    Operator,
    /// An account Owner or Admin through the API or the dashboard.
    Account,
}

/// Link-local and cloud-metadata ranges: reachable only through an entry inside them.
const LINK_LOCAL: [&str; 4] = [
    "169.254.0.0/16",
    "fe80::/10",
    // AWS's IPv6 instance metadata, Alibaba Cloud's metadata.
    "fd00:ec2::254/128",
    "100.100.100.200/32",
];

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Decides whether `binder` may reach `addr` as an upstream, given the operator's `networks` and
/// Atrium's own listening addresses `own`. `Err` says why not, for the refusal's message.
pub fn check(
    addr: SocketAddr,
    binder: Binder,
    networks: &[UpstreamNetwork],
    own: &[SocketAddr],
) -> Result<(), String> {
    let ip = unmapped(addr.ip());
    let addr = SocketAddr::new(ip, addr.port());
    let never = match ip {
        IpAddr::V4(v) => v.is_unspecified() || v.is_broadcast() || v.is_multicast(),
        IpAddr::V6(v) => v.is_unspecified() || v.is_multicast(),
    };
    if never || addr.port() == 0 {
        return Err(format!(
            "{addr} is not a unicast address and port a Prefect server can listen on"
        ));
    }
    // An entry names a special range explicitly when it lies inside it.
    let named_inside = |range: &IpNetwork| {
        networks
            .iter()
            .any(|n| n.covers(addr) && n.net.within(range))
    };
    for r in LINK_LOCAL {
        let range = IpNetwork::parse(r).map_err(|e| format!("built-in range {r}: {e}"))?;
        if range.contains(ip) && !named_inside(&range) {
            return Err(format!(
                "{addr} is a link-local or cloud-metadata address; only an upstream_networks entry inside {range} makes it reachable"
            ));
        }
    }
    let is_own = own.iter().any(|o| {
        let oip = unmapped(o.ip());
        o.port() == addr.port()
            && (oip == ip || oip.is_unspecified() || (oip.is_loopback() && ip.is_loopback()))
    });
    if is_own
        && !networks
            .iter()
            .any(|n| n.covers(addr) && n.net.is_host() && n.ports.0 == n.ports.1)
    {
        return Err(format!(
            "{addr} is Atrium's own listener; only an upstream_networks entry naming exactly this address and port makes it reachable"
        ));
    }
    match binder {
        Binder::Operator => Ok(()),
        Binder::Account if networks.iter().any(|n| n.covers(addr)) => Ok(()),
        Binder::Account => Err(format!(
            "{addr} is outside the networks account Owners and Admins may bind (the operator's upstream_networks setting); a site admin or the `atrium workspaces set-upstream` command can bind it"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    fn nets(list: &[&str]) -> Vec<UpstreamNetwork> {
        list.iter()
            .map(|s| UpstreamNetwork::parse(s).expect("network"))
            .collect()
    }

    #[test]
    fn entries_parse_with_optional_ports_and_print_back() {
        for (s, shown) in [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("10.1.2.3:4200", "10.1.2.3/32:4200"),
            ("10.0.0.0/8:4200-4299", "10.0.0.0/8:4200-4299"),
            ("[fd00::/8]:4200", "[fd00::/8]:4200"),
            ("fd00::/8", "fd00::/8"),
            ("[::1]", "::1/128"),
        ] {
            assert_eq!(
                UpstreamNetwork::parse(s).map(|n| n.to_string()),
                Ok(shown.to_string()),
                "{s}"
            );
        }
        for bad in [
            "10.0.0.0/8:0",
            "10.0.0.0/8:70000",
            "10.0.0.0/8:4300-4200",
            "[fd00::/8",
            "[fd00::/8]4200",
            "example.com:80",
            "10.0.0.1/8",
        ] {
            assert!(UpstreamNetwork::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn account_binders_stay_inside_the_listed_networks_and_ports() {
        let list = nets(&["10.0.0.0/8:4200-4299", "192.168.1.7"]);
        assert!(check(a("10.2.3.4:4200"), Binder::Account, &list, &[]).is_ok());
        assert!(check(a("192.168.1.7:9999"), Binder::Account, &list, &[]).is_ok());
        for refused in [
            "10.2.3.4:80",
            "11.0.0.1:4200",
            "127.0.0.1:4200",
            "[::ffff:11.0.0.1]:4200",
        ] {
            assert!(
                check(a(refused), Binder::Account, &list, &[]).is_err(),
                "{refused}"
            );
        }
        // Nothing listed: account binders can bind nothing, operators anything ordinary.
        assert!(check(a("10.2.3.4:4200"), Binder::Account, &[], &[]).is_err());
        assert!(check(a("10.2.3.4:4200"), Binder::Operator, &[], &[]).is_ok());
        // IPv4-mapped IPv6 counts as its IPv4 address.
        assert!(check(a("[::ffff:10.2.3.4]:4200"), Binder::Account, &list, &[]).is_ok());
    }

    #[test]
    fn special_addresses_need_an_entry_that_names_them() {
        let own = [a("127.0.0.1:4300")];
        let everything = nets(&["0.0.0.0/0", "::/0"]);
        for (target, why) in [
            ("169.254.169.254:80", "link-local"),
            ("[::ffff:169.254.169.254]:80", "link-local"),
            ("[fe80::1]:4200", "link-local"),
            ("[fd00:ec2::254]:80", "link-local"),
            ("100.100.100.200:80", "link-local"),
            ("127.0.0.1:4300", "own listener"),
            ("127.0.0.2:4300", "own listener"),
            ("0.0.0.0:4200", "unicast"),
            ("[::]:4200", "unicast"),
            ("255.255.255.255:4200", "unicast"),
            ("224.0.0.1:4200", "unicast"),
            ("10.0.0.1:0", "unicast"),
        ] {
            for binder in [Binder::Operator, Binder::Account] {
                let e = check(a(target), binder, &everything, &own).expect_err(target);
                assert!(e.contains(why), "{target}: {e}");
            }
        }
        // Named explicitly, they are reachable (by operators; account binders need the entry
        // anyway, and here it is that entry).
        let named = nets(&["169.254.169.254/32:80", "127.0.0.1:4300"]);
        for binder in [Binder::Operator, Binder::Account] {
            assert!(check(a("169.254.169.254:80"), binder, &named, &own).is_ok());
            assert!(check(a("127.0.0.1:4300"), binder, &named, &own).is_ok());
        }
        // Atrium listening on every address: its port is its own on any address.
        let any = [a("0.0.0.0:4300")];
        assert!(check(a("10.0.0.5:4300"), Binder::Operator, &[], &any).is_err());
        assert!(check(a("10.0.0.5:4200"), Binder::Operator, &[], &any).is_ok());
        // Other loopback ports are ordinary addresses (a Prefect server beside Atrium).
        assert!(check(a("127.0.0.1:4200"), Binder::Operator, &[], &own).is_ok());
    }
}
