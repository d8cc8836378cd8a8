//! Service ClusterIP and NodePort allocation.
//!
//! Each allocation remembers its owner (`namespace/name`). A stored service is the truth: an
//! entry whose owner no longer holds the value (a create or update that failed after
//! allocating, a service deleted while the entry was kept) counts as free, so no failure path
//! can leak addresses or ports.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::{Value, json};

use crate::apiserver::errors::{ApiError, FieldError, FieldErrorKind};
use crate::apiserver::store::Store;

/// The allocation state of one server.
#[derive(Debug)]
pub struct Allocators {
    /// First and last address handed out (network and broadcast excluded).
    first: u32,
    last: u32,
    /// End (exclusive) of the static band reserved for requested IPs.
    static_end: u32,
    cidr: String,
    ips: HashMap<u32, String>,
    ports: HashMap<u16, String>,
    port_lo: u16,
    port_hi: u16,
}

/// Owner key of a service.
pub fn owner(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

fn parse_cidr(cidr: &str) -> Option<(u32, u8)> {
    let (ip, bits) = cidr.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    if bits > 30 {
        return None;
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    Some((u32::from(ip) & mask, bits))
}

/// Whether the stored service `owner` still holds `ip`.
fn service_holds_ip(store: &Store, owner: &str, ip: &str) -> bool {
    let Some((ns, name)) = owner.split_once('/') else {
        return false;
    };
    store.get("services", ns, name).is_some_and(|s| {
        s["spec"]["clusterIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|v| v == ip)
            || s["spec"]["clusterIP"] == ip
    })
}

fn service_holds_port(store: &Store, owner: &str, port: u16) -> bool {
    let Some((ns, name)) = owner.split_once('/') else {
        return false;
    };
    store.get("services", ns, name).is_some_and(|s| {
        s["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["nodePort"].as_u64() == Some(u64::from(port)))
            || s["spec"]["healthCheckNodePort"].as_u64() == Some(u64::from(port))
    })
}

impl Allocators {
    /// The first address of the service range: the `kubernetes` Service's ClusterIP.
    pub fn first_ip(&self) -> String {
        Ipv4Addr::from(self.first).to_string()
    }

    pub fn new(config: &crate::apiserver::server::ServerConfig) -> Allocators {
        let (net, prefix) = parse_cidr(&config.service_cidr)
            .unwrap_or((u32::from(Ipv4Addr::new(10, 96, 0, 0)), 16));
        let size: u64 = 1u64 << (32 - prefix);
        let first = net + 1;
        let last = (u64::from(net) + size - 2) as u32;
        // kube-apiserver keeps the low 1/16 of the range (16..=256 addresses) for requested IPs.
        let offset = if size < 16 {
            0
        } else {
            (size / 16).clamp(16, 256)
        } as u32;
        let static_end = (net + offset).min(last);
        Allocators {
            first,
            last,
            static_end,
            cidr: format!("{}/{}", Ipv4Addr::from(net), prefix),
            ips: HashMap::new(),
            ports: HashMap::new(),
            port_lo: config.node_port_range.0,
            port_hi: config.node_port_range.1,
        }
    }

    fn ip_free(&mut self, store: &Store, ip: u32, me: &str) -> bool {
        match self.ips.get(&ip) {
            None => true,
            Some(o) if o == me => true,
            Some(o) => {
                if service_holds_ip(store, o, &Ipv4Addr::from(ip).to_string()) {
                    false
                } else {
                    self.ips.remove(&ip);
                    true
                }
            }
        }
    }

    fn port_free(&mut self, store: &Store, port: u16, me: &str) -> bool {
        match self.ports.get(&port) {
            None => true,
            Some(o) if o == me => true,
            Some(o) => {
                if service_holds_port(store, o, port) {
                    false
                } else {
                    self.ports.remove(&port);
                    true
                }
            }
        }
    }

    /// Allocate `requested` (or any free address) for `me`. `reserve=false` checks only (dry run).
    pub fn allocate_ip(
        &mut self,
        store: &Store,
        me: &str,
        requested: Option<&str>,
        reserve: bool,
    ) -> Result<String, ApiError> {
        let svc_name = me.split_once('/').map(|(_, n)| n).unwrap_or(me).to_string();
        if let Some(req) = requested {
            let invalid = |msg: String| {
                ApiError::invalid(
                    "",
                    "Service",
                    &svc_name,
                    &[FieldError::new(
                        FieldErrorKind::Invalid,
                        "spec.clusterIPs",
                        Some(format!("[]string{{{req:?}}}")),
                        msg,
                    )],
                )
            };
            let ip: Ipv4Addr = req.parse().map_err(|_| invalid(format!("failed to allocate IP {req}: the provided IP ({req}) is not in the valid range. The range of valid IPs is {}", self.cidr)))?;
            let n = u32::from(ip);
            if n < self.first || n > self.last {
                return Err(invalid(format!(
                    "failed to allocate IP {req}: the provided IP ({req}) is not in the valid range. The range of valid IPs is {}",
                    self.cidr
                )));
            }
            if !self.ip_free(store, n, me) {
                return Err(invalid(format!(
                    "failed to allocate IP {req}: provided IP is already allocated"
                )));
            }
            if reserve {
                self.ips.insert(n, me.to_string());
            }
            return Ok(req.to_string());
        }
        // Random start in the dynamic band, then linear probing; the static band last.
        let dyn_lo = (self.static_end + 1).max(self.first);
        let mut candidates: Vec<(u32, u32)> = Vec::new();
        if dyn_lo <= self.last {
            candidates.push((dyn_lo, self.last));
        }
        if self.first < dyn_lo {
            candidates.push((self.first, (dyn_lo - 1).min(self.last)));
        }
        let mut rng = rand::rng();
        for (lo, hi) in candidates {
            let span = hi - lo + 1;
            let start = rng.random_range(0..span);
            for i in 0..span {
                let n = lo + (start + i) % span;
                if self.ip_free(store, n, me) && self.ips.get(&n).is_none_or(|o| o != me) {
                    if reserve {
                        self.ips.insert(n, me.to_string());
                    }
                    return Ok(Ipv4Addr::from(n).to_string());
                }
            }
        }
        Err(ApiError::internal(
            "failed to allocate a serviceIP: range is full",
        ))
    }

    /// Allocate a node port for `ports[idx]` (`requested` or any free one).
    pub fn allocate_port(
        &mut self,
        store: &Store,
        me: &str,
        field: &str,
        requested: Option<i64>,
        reserve: bool,
    ) -> Result<u16, ApiError> {
        let svc_name = me.split_once('/').map(|(_, n)| n).unwrap_or(me).to_string();
        if let Some(req) = requested {
            let invalid = |msg: String| {
                ApiError::invalid(
                    "",
                    "Service",
                    &svc_name,
                    &[FieldError::new(
                        FieldErrorKind::Invalid,
                        field,
                        Some(req.to_string()),
                        msg,
                    )],
                )
            };
            if req < i64::from(self.port_lo) || req > i64::from(self.port_hi) {
                return Err(invalid(format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    self.port_lo, self.port_hi
                )));
            }
            let p = req as u16;
            if !self.port_free(store, p, me) {
                return Err(invalid("provided port is already allocated".into()));
            }
            if reserve {
                self.ports.insert(p, me.to_string());
            }
            return Ok(p);
        }
        let span = u32::from(self.port_hi - self.port_lo) + 1;
        let start = rand::rng().random_range(0..span);
        for i in 0..span {
            let p = self.port_lo + ((start + i) % span) as u16;
            if self.port_free(store, p, me) && self.ports.get(&p).is_none_or(|o| o != me) {
                if reserve {
                    self.ports.insert(p, me.to_string());
                }
                return Ok(p);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a nodePort: range is full",
        ))
    }

    /// Forget the IP if `me` holds it.
    pub fn release_ip(&mut self, me: &str, ip: &str) {
        if let Ok(a) = ip.parse::<Ipv4Addr>() {
            let n = u32::from(a);
            if self.ips.get(&n).is_some_and(|o| o == me) {
                self.ips.remove(&n);
            }
        }
    }

    pub fn release_port(&mut self, me: &str, port: u16) {
        if self.ports.get(&port).is_some_and(|o| o == me) {
            self.ports.remove(&port);
        }
    }

    /// Claim what a stored service holds (used when a service's values are carried over).
    pub fn claim_service(&mut self, me: &str, svc: &Value) {
        for ip in svc["spec"]["clusterIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Ok(a) = ip.parse::<Ipv4Addr>() {
                self.ips.insert(u32::from(a), me.to_string());
            }
        }
        for p in service_node_ports(svc) {
            self.ports.insert(p, me.to_string());
        }
    }

    /// Release everything a service held.
    pub fn release_service(&mut self, me: &str, svc: &Value) {
        for ip in svc["spec"]["clusterIPs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            self.release_ip(me, ip);
        }
        if let Some(ip) = svc["spec"]["clusterIP"].as_str() {
            self.release_ip(me, ip);
        }
        for p in service_node_ports(svc) {
            self.release_port(me, p);
        }
    }

    /// The service CIDR as text.
    pub fn cidr(&self) -> &str {
        &self.cidr
    }

    #[cfg(test)]
    fn counts(&self) -> (usize, usize) {
        (self.ips.len(), self.ports.len())
    }
}

/// Node ports (and the health-check port) a service holds.
pub fn service_node_ports(svc: &Value) -> Vec<u16> {
    let mut out: Vec<u16> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_u64())
        .filter_map(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .collect();
    if let Some(h) = svc["spec"]["healthCheckNodePort"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        && h != 0
    {
        out.push(h);
    }
    out
}

/// Whether a service type gets node ports.
pub fn needs_node_ports(svc: &Value) -> bool {
    match svc["spec"]["type"].as_str() {
        Some("NodePort") => true,
        Some("LoadBalancer") => svc["spec"]["allocateLoadBalancerNodePorts"] != json!(false),
        _ => false,
    }
}

/// Whether a service gets a cluster IP (not headless, not ExternalName).
pub fn needs_cluster_ip(svc: &Value) -> bool {
    svc["spec"]["type"] != "ExternalName" && svc["spec"]["clusterIP"] != "None"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::server::ServerConfig;

    fn alloc() -> Allocators {
        Allocators::new(&ServerConfig {
            service_cidr: "10.96.0.0/28".into(),
            node_port_range: (30000, 30002),
            ..ServerConfig::default()
        })
    }

    #[test]
    fn ips_are_unique_until_full() {
        let mut store = Store::new(10);
        let mut a = alloc();
        let mut seen = std::collections::HashSet::new();
        for i in 0..14 {
            let ip = a
                .allocate_ip(&store, &format!("ns/s{i}"), None, true)
                .unwrap();
            assert!(seen.insert(ip.clone()));
            let rv = store.next_rv();
            store.put(
                "services",
                "ns",
                &format!("s{i}"),
                json!({"spec": {"clusterIP": ip, "clusterIPs": [ip]}}),
                rv,
            );
        }
        let e = a.allocate_ip(&store, "ns/full", None, true).unwrap_err();
        assert_eq!(e.code, 500);
    }

    #[test]
    fn requested_ip_taken_and_out_of_range() {
        let mut store = Store::new(10);
        let mut a = alloc();
        a.allocate_ip(&store, "ns/a", Some("10.96.0.5"), true)
            .unwrap();
        let rv = store.next_rv();
        store.put(
            "services",
            "ns",
            "a",
            json!({"spec": {"clusterIP": "10.96.0.5", "clusterIPs": ["10.96.0.5"]}}),
            rv,
        );
        let e = a
            .allocate_ip(&store, "ns/b", Some("10.96.0.5"), true)
            .unwrap_err();
        assert!(
            e.body["message"]
                .as_str()
                .unwrap()
                .ends_with("failed to allocate IP 10.96.0.5: provided IP is already allocated")
        );
        let e = a
            .allocate_ip(&store, "ns/b", Some("192.168.0.10"), true)
            .unwrap_err();
        assert!(
            e.body["message"]
                .as_str()
                .unwrap()
                .contains("is not in the valid range. The range of valid IPs is 10.96.0.0/28")
        );
    }

    #[test]
    fn stale_entries_are_reclaimed() {
        let store = Store::new(10);
        let mut a = alloc();
        // Allocated but never stored (a failed create): free for someone else.
        a.allocate_port(&store, "ns/a", "spec.ports[0].nodePort", Some(30001), true)
            .unwrap();
        assert_eq!(
            a.allocate_port(&store, "ns/b", "spec.ports[0].nodePort", Some(30001), true)
                .unwrap(),
            30001
        );
    }

    #[test]
    fn ports_release_and_dry_run() {
        let mut store = Store::new(10);
        let mut a = alloc();
        let p = a
            .allocate_port(&store, "ns/a", "f", Some(30000), true)
            .unwrap();
        let rv = store.next_rv();
        store.put(
            "services",
            "ns",
            "a",
            json!({"spec": {"type": "NodePort", "ports": [{"nodePort": p}]}}),
            rv,
        );
        assert!(
            a.allocate_port(&store, "ns/b", "f", Some(30000), true)
                .is_err()
        );
        a.release_port("ns/a", 30000);
        let _ = a
            .allocate_port(&store, "ns/b", "f", Some(30000), false)
            .unwrap();
        assert_eq!(a.counts().1, 0);
        let e = a
            .allocate_port(&store, "ns/b", "spec.ports[0].nodePort", Some(80), true)
            .unwrap_err();
        assert!(e.body["message"].as_str().unwrap().ends_with("Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-30002"));
    }
}
