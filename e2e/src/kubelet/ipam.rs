//! Pod IP allocation from one IPv4 CIDR, unique among live pods.
//!
//! Allocation continues from the last handed-out address (like CNI's host-local IPAM), so an IP
//! freed by a deleted pod is not reused straight away; that keeps tests from confusing a new pod
//! with a deleted one that had the same address.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Why a CIDR string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pod cidr {cidr:?}: {reason}")]
pub struct CidrError {
    /// The rejected input.
    pub cidr: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Hands out pod IPs from a CIDR and remembers which pod (by UID) owns each.
#[derive(Debug, Clone)]
pub struct IpAllocator {
    network: u32,
    size: u32,
    /// Offset (from the network address) of the last address handed out.
    cursor: u32,
    owner_by_ip: HashMap<u32, String>,
    ip_by_owner: HashMap<String, u32>,
}

impl IpAllocator {
    /// Parses `a.b.c.d/len`; the prefix length must leave at least two usable addresses.
    pub fn new(cidr: &str) -> Result<Self, CidrError> {
        let err = |reason| CidrError {
            cidr: cidr.to_owned(),
            reason,
        };
        let (addr, len) = cidr
            .split_once('/')
            .ok_or_else(|| err("missing prefix length"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| err("not an ipv4 address"))?;
        let len: u32 = len.parse().map_err(|_| err("bad prefix length"))?;
        if len > 30 {
            return Err(err("prefix length must be at most 30"));
        }
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        let size = 1u64 << (32 - len);
        Ok(Self {
            network: u32::from(addr) & mask,
            size: u32::try_from(size).unwrap_or(u32::MAX),
            // The first pod gets network+2: .0 is the network and .1 is the bridge/gateway.
            cursor: 1,
            owner_by_ip: HashMap::new(),
            ip_by_owner: HashMap::new(),
        })
    }

    /// Whether `ip` lies inside this allocator's CIDR.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.network) < self.size
    }

    /// Returns the IP of `owner`, allocating the next free one if it has none.
    pub fn allocate(&mut self, owner: &str) -> Option<Ipv4Addr> {
        if let Some(ip) = self.ip_by_owner.get(owner) {
            return Some(Ipv4Addr::from(*ip));
        }
        // Usable offsets are 2..size-1 (skip network, gateway and broadcast).
        let usable = self.size.saturating_sub(3);
        for _ in 0..usable {
            self.cursor += 1;
            if self.cursor >= self.size - 1 {
                self.cursor = 2;
            }
            let ip = self.network + self.cursor;
            if let std::collections::hash_map::Entry::Vacant(slot) = self.owner_by_ip.entry(ip) {
                slot.insert(owner.to_owned());
                self.ip_by_owner.insert(owner.to_owned(), ip);
                return Some(Ipv4Addr::from(ip));
            }
        }
        None
    }

    /// Records that `owner` already holds `ip` (learned from an existing pod's status).
    /// Returns false (and changes nothing) when the IP is outside the CIDR or held by another.
    pub fn reserve(&mut self, owner: &str, ip: Ipv4Addr) -> bool {
        if !self.contains(ip) {
            return false;
        }
        let raw = u32::from(ip);
        match self.owner_by_ip.get(&raw) {
            Some(existing) if existing == owner => true,
            Some(_) => false,
            None => {
                if let Some(old) = self.ip_by_owner.insert(owner.to_owned(), raw) {
                    self.owner_by_ip.remove(&old);
                }
                self.owner_by_ip.insert(raw, owner.to_owned());
                true
            }
        }
    }

    /// Frees whatever IP `owner` holds.
    pub fn release(&mut self, owner: &str) -> Option<Ipv4Addr> {
        let ip = self.ip_by_owner.remove(owner)?;
        self.owner_by_ip.remove(&ip);
        Some(Ipv4Addr::from(ip))
    }

    /// How many addresses are currently allocated.
    pub fn in_use(&self) -> usize {
        self.owner_by_ip.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case("10.244.0.0/16", "10.244.0.2")]
    #[case("10.244.7.9/24", "10.244.7.2")]
    #[case("192.168.0.0/30", "192.168.0.2")]
    fn first_address_skips_network_and_gateway(#[case] cidr: &str, #[case] want: &str) {
        let mut ipam = IpAllocator::new(cidr).unwrap();
        assert_eq!(ipam.allocate("a").unwrap().to_string(), want);
    }

    #[rstest]
    #[case("10.0.0.0")]
    #[case("10.0.0/8")]
    #[case("10.0.0.0/31")]
    #[case("10.0.0.0/x")]
    fn rejects_bad_cidrs(#[case] cidr: &str) {
        assert!(IpAllocator::new(cidr).is_err());
    }

    #[test]
    fn unique_idempotent_and_not_reused_immediately() {
        let mut ipam = IpAllocator::new("10.1.0.0/24").unwrap();
        let a = ipam.allocate("a").unwrap();
        let b = ipam.allocate("b").unwrap();
        assert_ne!(a, b);
        assert_eq!(ipam.allocate("a"), Some(a));
        assert_eq!(ipam.release("a"), Some(a));
        let c = ipam.allocate("c").unwrap();
        assert_ne!(c, a);
        assert_ne!(c, b);
        assert_eq!(ipam.in_use(), 2);
    }

    #[test]
    fn exhaustion_and_wraparound() {
        // /29: 8 addresses, usable offsets 2..=6 -> 5 pods.
        let mut ipam = IpAllocator::new("10.2.0.0/29").unwrap();
        let ips: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&format!("p{i}")).unwrap())
            .collect();
        assert_eq!(ips.last().unwrap().to_string(), "10.2.0.6");
        assert_eq!(ipam.allocate("overflow"), None);
        ipam.release("p1");
        assert_eq!(ipam.allocate("again").unwrap().to_string(), "10.2.0.3");
    }

    #[test]
    fn reserve_respects_existing_owner_and_cidr() {
        let mut ipam = IpAllocator::new("10.3.0.0/24").unwrap();
        let ip: Ipv4Addr = "10.3.0.2".parse().unwrap();
        assert!(ipam.reserve("a", ip));
        assert!(ipam.reserve("a", ip));
        assert!(!ipam.reserve("b", ip));
        assert!(!ipam.reserve("b", "10.9.0.2".parse().unwrap()));
        assert_ne!(ipam.allocate("b"), Some(ip));
    }
}
