//! Pod resource arithmetic: the QoS class and the effective requests the scheduler fits.
//!
//! Both read requests the way the API server stores them after defaulting: a container that sets
//! a limit but no request for a resource is treated as requesting its limit, so the answer does
//! not depend on whether the server in front of us applied that defaulting.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::quantity::parse_milli;

/// The resources the QoS class looks at (Go's `isSupportedQoSComputeResource`).
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// A pod's QoS class, as the API server and kubelet compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    /// Every container has equal cpu and memory requests and limits.
    Guaranteed,
    /// Some request or limit is set, but not enough for Guaranteed.
    Burstable,
    /// No cpu or memory request or limit anywhere.
    BestEffort,
}

impl QosClass {
    /// The string stored in `status.qosClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guaranteed => "Guaranteed",
            Self::Burstable => "Burstable",
            Self::BestEffort => "BestEffort",
        }
    }
}

/// Cpu (millicores) and memory (millibytes) a pod asks the scheduler for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Requests {
    /// Millicores.
    pub cpu_milli: i128,
    /// Memory in thousandths of a byte (the unit `parse_milli` yields).
    pub memory_milli: i128,
}

fn positive(q: &Quantity) -> Option<i128> {
    parse_milli(&q.0).filter(|v| *v > 0)
}

/// Requests after API defaulting: a limit without a request becomes the request.
fn defaulted_requests(c: &Container) -> BTreeMap<String, Quantity> {
    let res = c.resources.as_ref();
    let mut out = res.and_then(|r| r.requests.clone()).unwrap_or_default();
    if let Some(limits) = res.and_then(|r| r.limits.as_ref()) {
        for (name, q) in limits {
            out.entry(name.clone()).or_insert_with(|| q.clone());
        }
    }
    out
}

fn all_containers(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[]);
    let main = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    init.iter().chain(main.iter())
}

/// Computes the QoS class the way `GetPodQOS` in kubernetes does (container-level resources).
pub fn qos_class(pod: &Pod) -> QosClass {
    let mut requests: BTreeMap<&str, i128> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i128> = BTreeMap::new();
    let mut guaranteed = true;
    for c in all_containers(pod) {
        for (name, q) in &defaulted_requests(c) {
            if let (Some(r), Some(v)) = (QOS_RESOURCES.iter().find(|r| **r == name), positive(q)) {
                *requests.entry(r).or_default() += v;
            }
        }
        let mut found = 0;
        if let Some(ls) = c.resources.as_ref().and_then(|r| r.limits.as_ref()) {
            for (name, q) in ls {
                if let (Some(r), Some(v)) =
                    (QOS_RESOURCES.iter().find(|r| **r == name), positive(q))
                {
                    found += 1;
                    *limits.entry(r).or_default() += v;
                }
            }
        }
        if found < QOS_RESOURCES.len() {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests
            .iter()
            .all(|(name, req)| limits.get(name) == Some(req))
    {
        return QosClass::Guaranteed;
    }
    QosClass::Burstable
}

fn container_requests(c: &Container) -> Requests {
    let reqs = defaulted_requests(c);
    let get = |name: &str| {
        reqs.get(name)
            .and_then(|q| parse_milli(&q.0))
            .unwrap_or(0)
            .max(0)
    };
    Requests {
        cpu_milli: get("cpu"),
        memory_milli: get("memory"),
    }
}

fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The scheduler's view of a pod's requests: the sum over app containers and sidecars, or the
/// largest one-shot init container (plus the sidecars started before it), whichever is larger,
/// plus `spec.overhead`.
pub fn pod_requests(pod: &Pod) -> Requests {
    let Some(spec) = pod.spec.as_ref() else {
        return Requests::default();
    };
    let mut total = Requests::default();
    for c in &spec.containers {
        let r = container_requests(c);
        total.cpu_milli += r.cpu_milli;
        total.memory_milli += r.memory_milli;
    }
    let mut sidecars = Requests::default();
    let mut init_peak = Requests::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if is_sidecar(c) {
            sidecars.cpu_milli += r.cpu_milli;
            sidecars.memory_milli += r.memory_milli;
            total.cpu_milli += r.cpu_milli;
            total.memory_milli += r.memory_milli;
        } else {
            init_peak.cpu_milli = init_peak.cpu_milli.max(sidecars.cpu_milli + r.cpu_milli);
            init_peak.memory_milli = init_peak
                .memory_milli
                .max(sidecars.memory_milli + r.memory_milli);
        }
    }
    let mut out = Requests {
        cpu_milli: total.cpu_milli.max(init_peak.cpu_milli),
        memory_milli: total.memory_milli.max(init_peak.memory_milli),
    };
    if let Some(overhead) = spec.overhead.as_ref() {
        let get = |n: &str| overhead.get(n).and_then(|q| parse_milli(&q.0)).unwrap_or(0);
        out.cpu_milli += get("cpu");
        out.memory_milli += get("memory");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodSpec, ResourceRequirements};
    use rstest::rstest;

    type Res<'a> = &'a [(&'a str, &'a str)];

    fn container(name: &str, requests: Res, limits: Res) -> Container {
        let map = |pairs: Res| {
            (!pairs.is_empty()).then(|| {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                    .collect()
            })
        };
        Container {
            name: name.to_owned(),
            image: Some("busybox".into()),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(containers: Vec<Container>, init: Vec<Container>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers,
                init_containers: (!init.is_empty()).then_some(init),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[rstest]
    #[case::nothing(&[], &[], QosClass::BestEffort)]
    #[case::only_other_resources(&[("ephemeral-storage", "1Gi")], &[], QosClass::BestEffort)]
    #[case::zero_requests(&[("cpu", "0")], &[], QosClass::BestEffort)]
    #[case::request_only(&[("cpu", "100m")], &[], QosClass::Burstable)]
    #[case::equal(&[("cpu", "1"), ("memory", "1Gi")], &[("cpu", "1000m"), ("memory", "1024Mi")], QosClass::Guaranteed)]
    #[case::limits_only_defaulted(&[], &[("cpu", "1"), ("memory", "1Gi")], QosClass::Guaranteed)]
    #[case::unequal(&[("cpu", "500m"), ("memory", "1Gi")], &[("cpu", "1"), ("memory", "1Gi")], QosClass::Burstable)]
    #[case::missing_memory_limit(&[("cpu", "1")], &[("cpu", "1")], QosClass::Burstable)]
    fn qos_single_container(#[case] req: Res, #[case] lim: Res, #[case] want: QosClass) {
        assert_eq!(
            qos_class(&pod(vec![container("c", req, lim)], vec![])),
            want
        );
    }

    #[test]
    fn qos_considers_init_containers() {
        let full = [("cpu", "1"), ("memory", "1Gi")];
        let guaranteed = pod(vec![container("c", &full, &full)], vec![]);
        assert_eq!(qos_class(&guaranteed), QosClass::Guaranteed);
        let with_best_effort_init = pod(
            vec![container("c", &full, &full)],
            vec![container("init", &[], &[])],
        );
        assert_eq!(qos_class(&with_best_effort_init), QosClass::Burstable);
        assert_eq!(QosClass::Burstable.as_str(), "Burstable");
    }

    #[test]
    fn requests_take_max_of_init_and_sum_of_apps() {
        let p = pod(
            vec![
                container("a", &[("cpu", "100m"), ("memory", "64Mi")], &[]),
                container("b", &[("cpu", "200m")], &[]),
            ],
            vec![container("init", &[("cpu", "1")], &[])],
        );
        let r = pod_requests(&p);
        assert_eq!(r.cpu_milli, 1000);
        assert_eq!(r.memory_milli, 64 * 1024 * 1024 * 1000);
    }

    #[test]
    fn sidecars_add_to_the_sum() {
        let mut sidecar = container("side", &[("cpu", "300m")], &[]);
        sidecar.restart_policy = Some("Always".into());
        let p = pod(
            vec![container("a", &[("cpu", "100m")], &[])],
            vec![sidecar, container("init", &[("cpu", "350m")], &[])],
        );
        // apps + sidecar = 400m; init runs next to the sidecar = 650m.
        assert_eq!(pod_requests(&p).cpu_milli, 650);
    }
}
