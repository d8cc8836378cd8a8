//! Node choice for a pending pod: the filters of the default scheduler that tests can hit
//! (cordon, taints/tolerations, nodeSelector and required node affinity, pod count, cpu and
//! memory), then round robin or least loaded among the survivors.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use super::config::{SchedulingStrategy, SimNode};
use super::quantity::parse_milli;
use super::resources::{Requests, pod_requests};

/// What is already placed on a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeLoad {
    /// Non-terminated pods bound (or being bound) to the node.
    pub pods: u32,
    /// Sum of their requests.
    pub requested: Requests,
}

/// Why the pod cannot go anywhere, worded like the default scheduler's `FailedScheduling`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unschedulable {
    /// e.g. `0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.
    /// preemption: ...`
    pub message: String,
}

/// Picks a node index for `pod` among `nodes` (with `loads[i]` for `nodes[i]`).
/// `cursor` is the round-robin position and is advanced past the chosen node.
pub fn select_node(
    pod: &Pod,
    nodes: &[SimNode],
    loads: &[NodeLoad],
    strategy: SchedulingStrategy,
    cursor: &mut usize,
) -> Result<usize, Unschedulable> {
    let requests = pod_requests(pod);
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut feasible = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let load = loads.get(i).copied().unwrap_or_default();
        match filter(pod, node, &load, &requests) {
            Ok(()) => feasible.push(i),
            Err(node_reasons) => {
                for r in node_reasons {
                    *reasons.entry(r).or_default() += 1;
                }
            }
        }
    }
    if feasible.is_empty() {
        return Err(Unschedulable {
            message: unschedulable_message(nodes.len(), &reasons),
        });
    }
    let chosen = match strategy {
        SchedulingStrategy::RoundRobin => {
            let n = nodes.len();
            let start = *cursor % n;
            (0..n)
                .map(|k| (start + k) % n)
                .find(|i| feasible.contains(i))
                .unwrap_or(feasible[0])
        }
        SchedulingStrategy::LeastLoaded => *feasible
            .iter()
            .min_by_key(|i| (loads.get(**i).map_or(0, |l| l.pods), **i))
            .unwrap_or(&feasible[0]),
    };
    *cursor = chosen + 1;
    Ok(chosen)
}

fn unschedulable_message(total: usize, reasons: &BTreeMap<String, usize>) -> String {
    // The real scheduler sorts the "<count> <reason>" strings, which is what BTreeMap order
    // over reasons gives only when counts share a digit count; sort the rendered strings.
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: \
         {total} Preemption is not helpful for scheduling.",
        parts.join(", ")
    )
}

/// Runs the filters in the default plugin order; the first failing plugin decides, except that
/// the resource fit reports every resource that is short.
fn filter(
    pod: &Pod,
    node: &SimNode,
    load: &NodeLoad,
    requests: &Requests,
) -> Result<(), Vec<String>> {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[]);
    if node.unschedulable {
        let cordon = Taint {
            key: "node.kubernetes.io/unschedulable".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        if !tolerations.iter().any(|t| tolerates(t, &cordon)) {
            return Err(vec!["node(s) were unschedulable".into()]);
        }
    }
    if let Some(taint) = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
    {
        return Err(vec![format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or("")
        )]);
    }
    if !matches_node_affinity(pod, node) {
        return Err(vec![
            "node(s) didn't match Pod's node affinity/selector".into(),
        ]);
    }
    let mut short = Vec::new();
    if load.pods + 1 > node.pods {
        short.push("Too many pods".to_owned());
    }
    let capacity = |q: &str| parse_milli(q).unwrap_or(0);
    if requests.cpu_milli > 0 && load.requested.cpu_milli + requests.cpu_milli > capacity(&node.cpu)
    {
        short.push("Insufficient cpu".to_owned());
    }
    if requests.memory_milli > 0
        && load.requested.memory_milli + requests.memory_milli > capacity(&node.memory)
    {
        short.push("Insufficient memory".to_owned());
    }
    if short.is_empty() { Ok(()) } else { Err(short) }
}

/// `ToleratesTaint` from k8s.io/api/core/v1.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty())
        && key != taint.key
    {
        return false;
    }
    match toleration.operator.as_deref() {
        Some("Exists") => true,
        None | Some("") | Some("Equal") => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        Some(_) => false,
    }
}

fn matches_node_affinity(pod: &Pod, node: &SimNode) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let labels = node.all_labels();
    if let Some(selector) = spec.node_selector.as_ref()
        && !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(selector) => selector
            .node_selector_terms
            .iter()
            .any(|term| term_matches(term, &labels, &node.name)),
    }
}

fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    // An empty term selects nothing, as in the real NodeSelector.
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let node_fields: BTreeMap<String, String> =
        [("metadata.name".to_owned(), name.to_owned())].into();
    exprs.iter().all(|r| requirement_matches(r, labels))
        && fields.iter().all(|r| requirement_matches(r, &node_fields))
}

fn requirement_matches(req: &NodeSelectorRequirement, labels: &BTreeMap<String, String>) -> bool {
    let value = labels.get(&req.key);
    let values = req.values.as_deref().unwrap_or(&[]);
    let as_int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(want)) = (
                value.and_then(|v| as_int(v)),
                values.first().and_then(|v| as_int(v)),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Affinity, Container, NodeAffinity, NodeSelector, PodSpec, ResourceRequirements,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use rstest::rstest;

    fn pod() -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn nodes() -> Vec<SimNode> {
        vec![
            SimNode::new("a").label("zone", "z1"),
            SimNode::new("b").label("zone", "z2"),
            SimNode::new("c").label("zone", "z2"),
        ]
    }

    fn pick(
        p: &Pod,
        ns: &[SimNode],
        loads: &[NodeLoad],
        s: SchedulingStrategy,
    ) -> Result<String, String> {
        let mut cursor = 0;
        select_node(p, ns, loads, s, &mut cursor)
            .map(|i| ns[i].name.clone())
            .map_err(|u| u.message)
    }

    #[test]
    fn round_robin_cycles() {
        let ns = nodes();
        let mut cursor = 0;
        let picks: Vec<_> = (0..4)
            .map(|_| {
                select_node(
                    &pod(),
                    &ns,
                    &[],
                    SchedulingStrategy::RoundRobin,
                    &mut cursor,
                )
                .unwrap()
            })
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0]);
    }

    #[test]
    fn least_loaded_prefers_emptiest() {
        let loads = [
            NodeLoad {
                pods: 3,
                ..Default::default()
            },
            NodeLoad {
                pods: 1,
                ..Default::default()
            },
            NodeLoad {
                pods: 1,
                ..Default::default()
            },
        ];
        assert_eq!(
            pick(&pod(), &nodes(), &loads, SchedulingStrategy::LeastLoaded),
            Ok("b".into())
        );
    }

    #[rstest]
    #[case::selector_match(&[("zone", "z1")], Ok("a".to_owned()))]
    #[case::selector_none(&[("zone", "z9")], Err("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.".to_owned()))]
    #[case::standard_label(&[("kubernetes.io/hostname", "c")], Ok("c".to_owned()))]
    fn node_selector(#[case] selector: &[(&str, &str)], #[case] want: Result<String, String>) {
        let mut p = pod();
        p.spec.as_mut().unwrap().node_selector = Some(
            selector
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
        );
        assert_eq!(
            pick(&p, &nodes(), &[], SchedulingStrategy::RoundRobin),
            want
        );
    }

    #[rstest]
    #[case("In", &["z2"], Ok("b".to_owned()))]
    #[case("NotIn", &["z1"], Ok("b".to_owned()))]
    #[case("Exists", &[], Ok("a".to_owned()))]
    #[case("DoesNotExist", &[], Err(()))]
    fn node_affinity(#[case] op: &str, #[case] values: &[&str], #[case] want: Result<String, ()>) {
        let mut p = pod();
        p.spec.as_mut().unwrap().affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "zone".into(),
                            operator: op.into(),
                            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        let got = pick(&p, &nodes(), &[], SchedulingStrategy::RoundRobin).map_err(|_| ());
        assert_eq!(got, want);
    }

    #[test]
    fn taints_need_tolerations() {
        let ns = vec![
            SimNode::new("a").taint("dedicated", Some("gpu"), "NoSchedule"),
            SimNode::new("b").taint("soft", None, "PreferNoSchedule"),
        ];
        assert_eq!(
            pick(&pod(), &ns, &[], SchedulingStrategy::RoundRobin),
            Ok("b".into())
        );
        let only_a = vec![ns[0].clone()];
        assert_eq!(
            pick(&pod(), &only_a, &[], SchedulingStrategy::RoundRobin),
            Err("0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.".into())
        );
        let mut p = pod();
        p.spec.as_mut().unwrap().tolerations = Some(vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Equal".into()),
            value: Some("gpu".into()),
            effect: Some("NoSchedule".into()),
            ..Default::default()
        }]);
        assert_eq!(
            pick(&p, &only_a, &[], SchedulingStrategy::RoundRobin),
            Ok("a".into())
        );
    }

    #[rstest]
    #[case(Toleration { operator: Some("Exists".into()), ..Default::default() }, true)]
    #[case(Toleration { key: Some("k".into()), operator: Some("Exists".into()), ..Default::default() }, true)]
    #[case(Toleration { key: Some("k".into()), value: Some("v".into()), ..Default::default() }, true)]
    #[case(Toleration { key: Some("k".into()), value: Some("x".into()), ..Default::default() }, false)]
    #[case(Toleration { key: Some("other".into()), operator: Some("Exists".into()), ..Default::default() }, false)]
    #[case(Toleration { operator: Some("Exists".into()), effect: Some("NoExecute".into()), ..Default::default() }, false)]
    fn toleration_matching(#[case] tol: Toleration, #[case] want: bool) {
        let taint = Taint {
            key: "k".into(),
            value: Some("v".into()),
            effect: "NoSchedule".into(),
            time_added: None,
        };
        assert_eq!(tolerates(&tol, &taint), want);
    }

    #[test]
    fn cordoned_and_full_nodes_are_skipped() {
        let ns = vec![
            SimNode::new("a").unschedulable(true),
            SimNode::new("b").pods(1),
            SimNode::new("c").cpu("1"),
        ];
        let loads = [
            NodeLoad::default(),
            NodeLoad {
                pods: 1,
                ..Default::default()
            },
            NodeLoad::default(),
        ];
        let mut p = pod();
        p.spec.as_mut().unwrap().containers[0].resources = Some(ResourceRequirements {
            requests: Some([("cpu".to_owned(), Quantity("2".into()))].into()),
            ..Default::default()
        });
        assert_eq!(
            pick(&p, &ns, &loads, SchedulingStrategy::RoundRobin),
            Err("0/3 nodes are available: 1 Insufficient cpu, 1 Too many pods, 1 node(s) were unschedulable. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.".into())
        );
        p.spec.as_mut().unwrap().containers[0].resources = None;
        assert_eq!(
            pick(&p, &ns, &loads, SchedulingStrategy::RoundRobin),
            Ok("c".into())
        );
    }
}
