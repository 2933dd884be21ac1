//! Address ranges (CIDR) and the special-purpose ranges the SSRF guard refuses (pure).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 or IPv6 network such as `10.0.0.0/8` or `fd00::/8`; a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this network (an IPv4-mapped IPv6 address counts as its IPv4 form).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(self.prefix))
                };
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(self.prefix))
                };
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        Cidr {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }
}

/// Why a string is not an address range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error(
        "`{0}` is not an address range: write e.g. `10.0.0.0/8`, `192.168.1.20` or `fd00::/8`"
    )]
    NotARange(String),
    #[error("`{range}`: the prefix length must be 0 to {max}")]
    Prefix { range: String, max: u8 },
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim_matches(['[', ']'])
            .parse()
            .map_err(|_| CidrError::NotARange(s.to_string()))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => {
                p.parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| CidrError::Prefix {
                        range: s.to_string(),
                        max,
                    })?
            }
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) as IPv4, everything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Ranges that are not the public internet, with the reason a denial states. Metadata comes
/// before link-local so the message names it.
const SPECIAL_V4: &[(Cidr, &str)] = &[
    (Cidr::v4(169, 254, 169, 254, 32), "a cloud metadata address"),
    (
        Cidr::v4(0, 0, 0, 0, 8),
        "an unspecified (\"this network\") address",
    ),
    (Cidr::v4(10, 0, 0, 0, 8), "a private address"),
    (
        Cidr::v4(100, 64, 0, 0, 10),
        "a carrier-grade NAT (shared) address",
    ),
    (Cidr::v4(127, 0, 0, 0, 8), "a loopback address"),
    (Cidr::v4(169, 254, 0, 0, 16), "a link-local address"),
    (Cidr::v4(172, 16, 0, 0, 12), "a private address"),
    (Cidr::v4(192, 0, 0, 0, 24), "an IETF protocol assignment"),
    (Cidr::v4(192, 0, 2, 0, 24), "a documentation address"),
    (Cidr::v4(192, 168, 0, 0, 16), "a private address"),
    (Cidr::v4(198, 18, 0, 0, 15), "a benchmarking address"),
    (Cidr::v4(198, 51, 100, 0, 24), "a documentation address"),
    (Cidr::v4(203, 0, 113, 0, 24), "a documentation address"),
    (Cidr::v4(224, 0, 0, 0, 4), "a multicast address"),
    (Cidr::v4(240, 0, 0, 0, 4), "a reserved address"),
];

/// Why `ip` is not a public internet address, or `None` for a global unicast address.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => SPECIAL_V4
            .iter()
            .find(|(net, _)| net.contains(IpAddr::V4(v4)))
            .map(|(_, why)| *why),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let seg = v6.segments();
    if v6.is_loopback() {
        Some("a loopback address")
    } else if v6.is_unspecified() {
        Some("an unspecified address")
    } else if seg[0] & 0xfe00 == 0xfc00 {
        Some("a unique-local (private) address")
    } else if seg[0] & 0xffc0 == 0xfe80 {
        Some("a link-local address")
    } else if seg[0] & 0xff00 == 0xff00 {
        Some("a multicast address")
    } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
        Some("a documentation address")
    } else if seg[0] == 0x0064 && seg[1] == 0xff9b {
        Some("a NAT64 address")
    } else if seg[..6] == [0, 0, 0, 0, 0, 0] {
        Some("an IPv4-compatible address")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_parse_and_contains() {
        let c: Cidr = "198.18.0.0/15".parse().unwrap();
        assert!(c.contains(ip("198.19.255.1")));
        assert!(!c.contains(ip("198.20.0.1")));
        assert!(c.contains(ip("::ffff:198.18.0.2")));
        let one: Cidr = "10.1.2.3".parse().unwrap();
        assert_eq!(one.prefix, 32);
        assert!(one.contains(ip("10.1.2.3")) && !one.contains(ip("10.1.2.4")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!("10.0.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .to_string()
            .contains("0 to 32"));
        assert!("example.com"
            .parse::<Cidr>()
            .unwrap_err()
            .to_string()
            .contains("not an address range"));
    }

    #[test]
    fn cidr_errors_are_typed() {
        assert_eq!(
            "fd00::/129".parse::<Cidr>(),
            Err(CidrError::Prefix {
                range: "fd00::/129".into(),
                max: 128
            })
        );
        assert_eq!(
            " example.com ".parse::<Cidr>(),
            Err(CidrError::NotARange("example.com".into()))
        );
    }

    #[test]
    fn special_ranges() {
        assert_eq!(special_purpose(ip("127.0.0.1")), Some("a loopback address"));
        assert_eq!(
            special_purpose(ip("169.254.169.254")),
            Some("a cloud metadata address")
        );
        assert_eq!(
            special_purpose(ip("169.254.1.1")),
            Some("a link-local address")
        );
        assert_eq!(
            special_purpose(ip("192.168.1.1")),
            Some("a private address")
        );
        assert_eq!(
            special_purpose(ip("::ffff:10.0.0.1")),
            Some("a private address")
        );
        assert_eq!(special_purpose(ip("::1")), Some("a loopback address"));
        assert_eq!(special_purpose(ip("fe80::1")), Some("a link-local address"));
        assert!(special_purpose(ip("198.18.0.2")).is_some());
        assert_eq!(special_purpose(ip("140.82.112.3")), None);
        assert_eq!(special_purpose(ip("2606:4700::1111")), None);
    }
}
