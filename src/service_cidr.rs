//! Learning the host's Service CIDRs at start-up, so that no tenant endpoint (a selector-less
//! Endpoints or EndpointSlice, an ExternalName given as an IP) can aim a host Service at a
//! Service virtual IP, such as the host `kubernetes` Service's. Kubernetes does not support
//! virtual IPs as endpoint addresses anyway, so nothing legitimate is lost.
//!
//! Sources, in the order tried; each that answers adds what it knows, none is required:
//! 1. `--host-service-cidr` (the operator knows best);
//! 2. the ServiceCIDR API (`networking.k8s.io` `servicecidrs`, v1 then v1beta1): exact, but
//!    cluster-scoped, so a namespace-scoped install cannot read it;
//! 3. an allocation probe: a dry-run create of a Service in the host namespace asking for
//!    ClusterIP `0.0.0.0` (then `::`), which the API server refuses naming its valid range
//!    ("… The range of valid IPs is 10.96.0.0/12"). Dry run persists nothing, and
//!    `create services` in its own namespace is a permission vcsync has anyway, so every
//!    install gets this one;
//! 4. the `default/kubernetes` Service's ClusterIPs (single addresses), where readable.
//!
//! At run time the ClusterIPs of the host Services vcsync syncs are added too when no known
//! range covers them ([`crate::sync::Shared::observe_service_ips`]).

use std::fmt;

use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use serde_json::json;

use crate::policy::net::Cidr;

/// Where a Service CIDR was learned from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--host-service-cidr`.
    Flag,
    /// The ServiceCIDR API.
    ServiceCidrApi,
    /// The range named by a refused dry-run allocation.
    AllocationProbe,
    /// The ClusterIP of the `default/kubernetes` Service.
    KubernetesService,
}

impl Source {
    /// The source as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "flag",
            Source::ServiceCidrApi => "servicecidr-api",
            Source::AllocationProbe => "allocation-probe",
            Source::KubernetesService => "kubernetes-service",
        }
    }
}

/// The Service CIDRs learned, each with its first source (no duplicates).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Learned(Vec<(Cidr, Source)>);

impl Learned {
    /// Add `cidr` unless an earlier source gave it already.
    pub fn add(&mut self, cidr: Cidr, source: Source) {
        if !self.0.iter().any(|(c, _)| *c == cidr) {
            self.0.push((cidr, source));
        }
    }

    /// The CIDRs alone.
    pub fn cidrs(&self) -> Vec<Cidr> {
        self.0.iter().map(|(c, _)| *c).collect()
    }

    /// Whether nothing was learned.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for Learned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, (c, s)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{c} ({})", s.as_str())?;
        }
        Ok(())
    }
}

/// The marker kube-apiserver's ClusterIP allocator puts before the range in its refusal.
const RANGE_MARKER: &str = "The range of valid IPs is ";

/// The range an API server's ClusterIP allocation refusal names, e.g. from `… failed to
/// allocate IP 0.0.0.0: the provided IP (0.0.0.0) is not in the valid range. The range of
/// valid IPs is 10.96.0.0/12`. Several ranges (separated by commas or spaces) are all taken.
pub fn ranges_in_message(msg: &str) -> Vec<Cidr> {
    let Some(at) = msg.find(RANGE_MARKER) else {
        return Vec::new();
    };
    msg[at + RANGE_MARKER.len()..]
        .split([',', ' ', ';'])
        .map(|t| t.trim_matches(|c: char| c == '"' || c == '.' || c == '[' || c == ']'))
        .filter_map(|t| t.parse::<Cidr>().ok())
        .collect()
}

/// The addresses the probe asks for, per family, until one names a range: the unspecified
/// address first (inside no range), then a documentation address (RFC 5737 / RFC 3849), in
/// case a server refuses the unspecified one before allocating.
const PROBE_IPS: [[&str; 2]; 2] = [["0.0.0.0", "192.0.2.1"], ["::", "2001:db8::1"]];

/// Learn the host's Service CIDRs from every source that answers (see the module docs).
/// Failures of the optional sources are logged at debug level: they are expected in a
/// namespace-scoped install.
pub async fn learn(host: &Client, namespace: &str, flag: &[Cidr]) -> Learned {
    let mut out = Learned::default();
    for c in flag {
        out.add(*c, Source::Flag);
    }
    for c in from_service_cidr_api(host).await {
        out.add(c, Source::ServiceCidrApi);
    }
    for family in PROBE_IPS {
        for ip in family {
            let found = probe(host, namespace, ip).await;
            let done = !found.is_empty();
            for c in found {
                out.add(c, Source::AllocationProbe);
            }
            if done {
                break;
            }
        }
    }
    let kubernetes: Api<Service> = Api::namespaced(host.clone(), "default");
    match kubernetes.get_opt("kubernetes").await {
        Ok(Some(svc)) => {
            for ip in svc.spec.iter().flat_map(|s| s.cluster_ips.iter().flatten()) {
                if let Some(ip) = crate::policy::net::parse_ip(ip) {
                    out.add(Cidr::from(ip), Source::KubernetesService);
                }
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::debug!(error = %crate::sync::brief(&e), "the default/kubernetes Service is not readable")
        }
    }
    out
}

/// `spec.cidrs` of every ServiceCIDR, from the first served version that answers.
async fn from_service_cidr_api(host: &Client) -> Vec<Cidr> {
    for version in ["v1", "v1beta1"] {
        let gvk = GroupVersionKind::gvk("networking.k8s.io", version, "ServiceCIDR");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "servicecidrs");
        let api: Api<DynamicObject> = Api::all_with(host.clone(), &ar);
        match api.list(&ListParams::default()).await {
            Ok(list) => {
                return list
                    .items
                    .iter()
                    .filter_map(|o| o.data.pointer("/spec/cidrs")?.as_array().cloned())
                    .flatten()
                    .filter_map(|c| c.as_str()?.parse::<Cidr>().ok())
                    .collect();
            }
            Err(e) => tracing::debug!(
                version,
                error = %crate::sync::brief(&e),
                "the ServiceCIDR API is not readable"
            ),
        }
    }
    Vec::new()
}

/// Ask for ClusterIP `ip` in a dry-run create and read the valid range off the refusal.
async fn probe(host: &Client, namespace: &str, ip: &str) -> Vec<Cidr> {
    let api: Api<Service> = Api::namespaced(host.clone(), namespace);
    let svc: Service = match serde_json::from_value(json!({
        "metadata": {"name": "vcsync-service-cidr-probe"},
        "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"port": 1}]},
    })) {
        Ok(s) => s,
        Err(_) => return Vec::new(),
    };
    let pp = PostParams {
        dry_run: true,
        field_manager: Some(crate::markers::FIELD_MANAGER.to_owned()),
    };
    match api.create(&pp, &svc).await {
        Err(kube::Error::Api(status)) => {
            let found = ranges_in_message(&status.message);
            if found.is_empty() {
                tracing::debug!(ip, message = %status.message, "the allocation probe named no range");
            }
            found
        }
        Err(e) => {
            tracing::debug!(ip, error = %crate::sync::brief(&e), "the allocation probe failed");
            Vec::new()
        }
        // Only a range that contains the probe address would accept it: none does.
        Ok(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::legacy_allocator(
        "Service \"p\" is invalid: spec.clusterIPs: Invalid value: []string{\"0.0.0.0\"}: failed to allocate IP 0.0.0.0: the provided IP (0.0.0.0) is not in the valid range. The range of valid IPs is 10.96.0.0/12",
        &["10.96.0.0/12"]
    )]
    #[case::older_wording(
        "failed to allocate IP 0.0.0.0: provided IP is not in the valid range. The range of valid IPs is 10.19.0.0/18",
        &["10.19.0.0/18"]
    )]
    #[case::several("… The range of valid IPs is 10.43.0.0/16, fd00:43::/112", &["10.43.0.0/16", "fd00:43::/112"])]
    #[case::cidr_word("failed to allocate an IP. The range of valid IPs is CIDR 10.96.0.0/12", &["10.96.0.0/12"])]
    #[case::trailing_period("The range of valid IPs is 10.43.0.0/16.", &["10.43.0.0/16"])]
    #[case::no_range("spec.ipFamilies[0]: Invalid value: \"IPv6\": not configured on this cluster", &[])]
    #[case::garbage("The range of valid IPs is banana", &[])]
    fn ranges_from_refusals(#[case] msg: &str, #[case] want: &[&str]) {
        let got: Vec<String> = ranges_in_message(msg)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn learned_keeps_the_first_source_of_each_cidr() {
        let mut l = Learned::default();
        let c: Cidr = "10.96.0.0/12".parse().unwrap();
        l.add(c, Source::Flag);
        l.add(c, Source::AllocationProbe);
        l.add("10.96.0.1".parse().unwrap(), Source::KubernetesService);
        assert_eq!(
            l.to_string(),
            "10.96.0.0/12 (flag), 10.96.0.1/32 (kubernetes-service)"
        );
        assert_eq!(l.cidrs().len(), 2);
    }
}
