//! Value types of the policy file that are validated when parsed: CIDRs, hostname patterns and
//! annotation-key globs, plus the address checks every network rule shares.
//!
//! Each type parses in its `Deserialize` impl, so an invalid value is reported by the YAML loader
//! with its path and line; once loaded, a value can no longer be malformed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP network (`10.0.0.0/8`, `fd00::/8`) or a single address (`192.0.2.7`, read as `/32` or
/// `/128`). Host bits must be zero, so `10.0.0.1/8` is refused rather than guessed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies inside this network. IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are
    /// compared as the IPv4 address they carry, since the kernel treats them as such.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }

    /// Whether every address of `other` lies inside this network (same address family).
    pub fn covers(&self, other: &Cidr) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && self.prefix <= other.prefix
            // Not `contains`: that reads IPv4-mapped addresses as IPv4, a network compares bits.
            && network(other.addr, self.prefix) == self.addr
    }

    /// Whether this is an IPv4 network.
    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Self {
        let [a, b, c, d, e, f, g, h] = segments;
        Self {
            addr: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }
}

impl From<IpAddr> for Cidr {
    /// The single-address network of `ip` (`/32` or `/128`).
    fn from(ip: IpAddr) -> Self {
        let ip = canonical(ip);
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Self { addr: ip, prefix }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = ip
            .parse()
            .map_err(|_| format!("invalid CIDR {s:?}: {ip:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            // Digits only, no redundant leading zero: `u8::from_str` would accept `+8` and `08`.
            Some(p)
                if !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0')) =>
            {
                match p.parse::<u8>() {
                    Ok(p) if p <= max => p,
                    _ => return Err(bad_prefix(s, max)),
                }
            }
            Some(_) => return Err(bad_prefix(s, max)),
        };
        if network(addr, prefix) != addr {
            return Err(format!(
                "invalid CIDR {s:?}: host bits are set (the network is {}/{prefix})",
                network(addr, prefix)
            ));
        }
        Ok(Cidr { addr, prefix })
    }
}

fn bad_prefix(s: &str, max: u8) -> String {
    format!("invalid CIDR {s:?}: the prefix length must be a plain number from 0 to {max}")
}

fn network(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Serialize for Cidr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The IPv4 address an IPv4-mapped IPv6 address (`::ffff:169.254.169.254`) stands for; any other
/// address unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// IPv4 addresses an IPv6 address may lead to besides itself: the IPv4-compatible form
/// (`::a.b.c.d`, deprecated but still routed by some stacks) and the NAT64 prefixes
/// `64:ff9b::/96` and `64:ff9b:1::/48` (RFC 6052, RFC 8215), which a NAT64 gateway translates
/// to the embedded address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let nat64 = Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96);
    let nat64_local = Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48);
    if bits >> 32 == 0 && bits > 1 {
        return Some(low);
    }
    if nat64.contains(IpAddr::V6(ip)) || nat64_local.contains(IpAddr::V6(ip)) {
        return Some(low);
    }
    None
}

/// Addresses no tenant object may ever point at, whatever the policy allows: each is a way
/// from a tenant Service into the node or the cloud account behind it.
const ALWAYS_DENIED: &[(Cidr, &str)] = &[
    (
        Cidr::v4(0, 0, 0, 0, 8),
        "the unspecified / \"this host\" range",
    ),
    (Cidr::v4(127, 0, 0, 0, 8), "loopback"),
    (
        Cidr::v4(169, 254, 0, 0, 16),
        "link-local (cloud metadata endpoints such as 169.254.169.254)",
    ),
    (
        Cidr::v4(100, 100, 100, 200, 32),
        "a cloud metadata endpoint",
    ),
    (Cidr::v4(224, 0, 0, 0, 4), "multicast"),
    (Cidr::v4(240, 0, 0, 0, 4), "reserved / broadcast"),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128),
        "the unspecified address",
    ),
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (
        Cidr::v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128),
        "a cloud metadata endpoint",
    ),
    (Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// The built-in ranges no tenant object may ever target, with why ([`denied_reason`] checks
/// addresses against them; network rules carve them out of or refuse whole blocks).
pub fn always_denied() -> &'static [(Cidr, &'static str)] {
    ALWAYS_DENIED
}

/// IPv6 ranges that carry an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64): an IPv6
/// block inside one reaches IPv4 addresses, so network rules carve them out of IPv6 blocks
/// and refuse blocks inside them (the tenant can write the IPv4 block instead).
pub const IPV4_EMBEDDING: &[(Cidr, &str)] = &[
    (
        Cidr::v6([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
        "IPv4-mapped IPv6",
    ),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible IPv6",
    ),
    (Cidr::v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96), "NAT64"),
    (
        Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "local NAT64",
    ),
];

/// Why `ip` may never be a target, if it may not: a built-in range (loopback, link-local, ...)
/// checked on the address itself and on every IPv4 address it embeds, then `denied` (the
/// policy's and the host's own addresses).
pub fn denied_reason<'a>(
    ip: IpAddr,
    denied: impl IntoIterator<Item = (&'a Cidr, &'a str)> + Clone,
) -> Option<String> {
    let mut candidates = vec![canonical(ip)];
    if let IpAddr::V6(v6) = canonical(ip)
        && let Some(v4) = embedded_v4(v6)
    {
        candidates.push(IpAddr::V4(v4));
    }
    for c in &candidates {
        for (net, why) in ALWAYS_DENIED {
            if net.contains(*c) {
                return Some(format!("{ip} is {why} ({net})"));
            }
        }
        for (net, why) in denied.clone() {
            if net.contains(*c) {
                return Some(format!("{ip} is {why} ({net})"));
            }
        }
    }
    None
}

/// `a, b, c`, or `none` for an empty list (for messages and logs).
pub fn cidr_list(cidrs: &[Cidr]) -> String {
    if cidrs.is_empty() {
        "none".to_owned()
    } else {
        cidrs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Parse an address the way Kubernetes validation accepts it; `None` for anything else.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse().ok()
}

/// A hostname pattern: an exact DNS name (`shop.example.com`) or a wildcard (`*.tenant-a.apps.example.com`)
/// that matches every name below it, at any depth, but not the name itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// Whether `host` (a name or an Ingress wildcard host such as `*.shop.example.com`) lies
    /// inside this pattern. A wildcard host matches only a wildcard pattern that covers it, so
    /// `*.example.com` never fits inside `*.shop.example.com`.
    pub fn matches(&self, host: &str) -> bool {
        let host = normalize_host(host);
        match self.0.strip_prefix("*.") {
            None => host == self.0,
            Some(suffix) => {
                let below = host
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1);
                below || host == self.0
            }
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lower-case, without one trailing dot: DNS names compare case-insensitively, and `a.com.` is
/// the same name as `a.com`.
pub fn normalize_host(host: &str) -> String {
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// Whether `s` is a lower-case RFC 1123 subdomain.
fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl FromStr for HostPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.strip_prefix("*.").unwrap_or(s);
        if !is_dns_subdomain(rest) {
            return Err(format!(
                "invalid hostname pattern {s:?}: expected a lower-case DNS name, optionally starting with \"*.\" (e.g. \"*.tenant-a.apps.example.com\")"
            ));
        }
        if s.starts_with("*.") && !rest.contains('.') {
            return Err(format!(
                "invalid hostname pattern {s:?}: a wildcard must cover a domain of at least two labels, not a whole top-level domain"
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for HostPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A glob over annotation keys: `*` matches any run of characters (including `/`), everything
/// else literally, ASCII case-insensitively (ingress controllers differ in how they fold keys,
/// so a denylist must not be dodged by capitalisation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyGlob(String);

impl KeyGlob {
    /// Whether `key` matches.
    pub fn matches(&self, key: &str) -> bool {
        glob_match(
            self.0.to_ascii_lowercase().as_bytes(),
            key.to_ascii_lowercase().as_bytes(),
        )
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn glob_match(pat: &[u8], s: &[u8]) -> bool {
    // Iterative wildcard matching with one backtrack point: linear in practice, no recursion.
    let (mut p, mut i) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while i < s.len() {
        if p < pat.len() && pat[p] == b'*' {
            star = Some(p);
            mark = i;
            p += 1;
        } else if p < pat.len() && pat[p] == s[i] {
            p += 1;
            i += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|&b| b == b'*')
}

impl FromStr for KeyGlob {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 317
            && s.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'*')
            });
        if !ok {
            return Err(format!(
                "invalid annotation pattern {s:?}: expected an annotation key in which \"*\" matches any characters"
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for KeyGlob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for KeyGlob {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for KeyGlob {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("10.0.0.0/8", "10.255.0.1", true)]
    #[case("10.0.0.0/8", "11.0.0.1", false)]
    #[case("10.0.0.0/8", "::ffff:10.1.2.3", true)]
    #[case("192.0.2.7", "192.0.2.7", true)]
    #[case("192.0.2.7", "192.0.2.8", false)]
    #[case("0.0.0.0/0", "203.0.113.9", true)]
    #[case("0.0.0.0/0", "2001:db8::1", false)]
    #[case("2001:db8::/32", "2001:db8:ffff::1", true)]
    #[case("2001:db8::/32", "2001:db9::1", false)]
    #[case("::/0", "fe80::1", true)]
    fn cidr_contains(#[case] cidr: &str, #[case] ip: &str, #[case] want: bool) {
        let c: Cidr = cidr.parse().unwrap();
        assert_eq!(c.contains(ip.parse().unwrap()), want, "{cidr} ∋ {ip}");
    }

    #[rstest]
    #[case("10.0.0.1/8", "host bits are set")]
    #[case("10.0.0.0/33", "prefix length")]
    #[case("10.0.0.0/x", "prefix length")]
    #[case("300.0.0.0/8", "not an IP address")]
    #[case("example.com", "not an IP address")]
    #[case("2001:db8::1/32", "host bits are set")]
    #[case("", "not an IP address")]
    fn invalid_cidrs(#[case] s: &str, #[case] reason: &str) {
        let err = s.parse::<Cidr>().unwrap_err();
        assert!(err.contains(reason), "{s}: {err}");
    }

    #[test]
    fn cidr_yaml_rejects_odd_prefix_spellings() {
        for s in ["10.0.0.0/08", "10.0.0.0/+8", "10.0.0.0/ 8"] {
            let r: Result<Cidr, _> = serde_saphyr::from_str(&format!("{s:?}"));
            assert!(r.is_err(), "{s} accepted");
        }
    }

    #[rstest]
    #[case::metadata("169.254.169.254", Some("link-local"))]
    #[case::link_local_other("169.254.0.1", Some("link-local"))]
    #[case::loopback("127.0.0.1", Some("loopback"))]
    #[case::loopback_high("127.255.255.254", Some("loopback"))]
    #[case::unspecified("0.0.0.0", Some("unspecified"))]
    #[case::v6_loopback("::1", Some("loopback"))]
    #[case::v6_unspecified("::", Some("unspecified"))]
    #[case::v6_link_local("fe80::1", Some("link-local"))]
    #[case::v6_link_local_upper("FE80::abcd", Some("link-local"))]
    #[case::mapped_metadata("::ffff:169.254.169.254", Some("link-local"))]
    #[case::mapped_metadata_hex("::ffff:a9fe:a9fe", Some("link-local"))]
    #[case::mapped_loopback("::ffff:127.0.0.1", Some("loopback"))]
    #[case::compat_loopback("::127.0.0.1", Some("loopback"))]
    #[case::nat64_metadata("64:ff9b::169.254.169.254", Some("link-local"))]
    #[case::nat64_local_loopback("64:ff9b:1::7f00:1", Some("loopback"))]
    #[case::aws_v6_metadata("fd00:ec2::254", Some("metadata"))]
    #[case::alibaba_metadata("100.100.100.200", Some("metadata"))]
    #[case::multicast("224.0.0.1", Some("multicast"))]
    #[case::broadcast("255.255.255.255", Some("reserved"))]
    #[case::ok_v4("10.0.0.5", None)]
    #[case::ok_v6("2001:db8::5", None)]
    #[case::ok_mapped("::ffff:10.0.0.5", None)]
    fn built_in_denied(#[case] ip: &str, #[case] want: Option<&str>) {
        let got = denied_reason(ip.parse().unwrap(), std::iter::empty());
        match want {
            None => assert_eq!(got, None, "{ip}"),
            Some(w) => assert!(
                got.as_deref().is_some_and(|g| g.contains(w)),
                "{ip}: {got:?}"
            ),
        }
    }

    #[test]
    fn extra_denied_ranges_apply_to_mapped_addresses() {
        let api: Cidr = "10.96.0.1".parse().unwrap();
        let extra = [(&api, "the host API server")];
        let got = denied_reason("::ffff:10.96.0.1".parse().unwrap(), extra).unwrap();
        assert!(got.contains("host API server"), "{got}");
        assert!(denied_reason("10.96.0.2".parse().unwrap(), extra).is_none());
    }

    #[rstest]
    #[case("*.tenant-a.apps.example.com", "shop.tenant-a.apps.example.com", true)]
    #[case("*.tenant-a.apps.example.com", "a.b.tenant-a.apps.example.com", true)]
    #[case("*.tenant-a.apps.example.com", "SHOP.Tenant-A.apps.example.com.", true)]
    #[case("*.tenant-a.apps.example.com", "*.tenant-a.apps.example.com", true)]
    #[case("*.tenant-a.apps.example.com", "*.x.tenant-a.apps.example.com", true)]
    #[case("*.tenant-a.apps.example.com", "tenant-a.apps.example.com", false)]
    #[case("*.tenant-a.apps.example.com", "*.apps.example.com", false)]
    #[case("*.tenant-a.apps.example.com", "evil-tenant-a.apps.example.com", false)]
    #[case("*.tenant-a.apps.example.com", "shop.tenant-b.apps.example.com", false)]
    #[case("shop.example.com", "shop.example.com", true)]
    #[case("shop.example.com", "a.shop.example.com", false)]
    #[case("shop.example.com", "*.example.com", false)]
    fn host_patterns(#[case] pattern: &str, #[case] host: &str, #[case] want: bool) {
        let p: HostPattern = pattern.parse().unwrap();
        assert_eq!(p.matches(host), want, "{pattern} vs {host}");
    }

    #[rstest]
    #[case("*")]
    #[case("*.com")]
    #[case("foo.*.com")]
    #[case("*foo.com")]
    #[case("Shop.example.com")]
    #[case("")]
    #[case("a..b")]
    fn invalid_host_patterns(#[case] s: &str) {
        assert!(s.parse::<HostPattern>().is_err(), "{s}");
    }

    #[rstest]
    #[case(
        "nginx.ingress.kubernetes.io/*-snippet",
        "nginx.ingress.kubernetes.io/server-snippet",
        true
    )]
    #[case(
        "nginx.ingress.kubernetes.io/*-snippet",
        "nginx.ingress.kubernetes.io/Configuration-Snippet",
        true
    )]
    #[case(
        "nginx.ingress.kubernetes.io/*-snippet",
        "nginx.ingress.kubernetes.io/snippet",
        false
    )]
    #[case(
        "nginx.ingress.kubernetes.io/*-snippet",
        "nginx.ingress.kubernetes.io/server-snippets",
        false
    )]
    #[case("haproxy.org/*snippet*", "haproxy.org/backend-config-snippet", true)]
    #[case("a/b", "a/b", true)]
    #[case("a/b", "a/bc", false)]
    #[case("*", "anything/at-all", true)]
    fn key_globs(#[case] glob: &str, #[case] key: &str, #[case] want: bool) {
        let g: KeyGlob = glob.parse().unwrap();
        assert_eq!(g.matches(key), want, "{glob} vs {key}");
    }
}
