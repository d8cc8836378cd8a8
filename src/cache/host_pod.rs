//! The host pod as vcsync caches it: a projection of `Pod` holding only what the syncs read.
//!
//! A k8s-openapi `Pod` costs several times its JSON on the heap (every field of every container
//! is an `Option` slot, every string its own allocation), and vcsync keeps one per synced pod.
//! Of a host pod the syncs read the metadata (ownership markers, uid, deletion), the node it was
//! scheduled to, the status that flows up, and the few spec fields vcsync keeps in step after
//! creation (container images, tolerations, `activeDeadlineSeconds`: the mutable ones).
//! [`HostPod`] is deserialized straight from the host API's JSON (list and watch) with nothing
//! else: the rest of the spec is never allocated, which saves memory and decoding time alike.
//!
//! It is a `Resource` of kind `Pod` (`v1`, `pods`), so kube-runtime's watcher, reflector and
//! `Api` work on it unchanged.

use k8s_openapi::api::core::v1::{Pod, PodStatus, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A host pod, as cached: metadata, the owned mutable spec fields, and the status.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
pub struct HostPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<HostPodSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PodStatus>,
}

/// The spec fields of a host pod that vcsync reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HostPodSpec {
    /// The node the host scheduler bound the pod to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default)]
    pub containers: Vec<ContainerImage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_containers: Option<Vec<ContainerImage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
}

/// A container's name and image: the only container fields that change after creation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ContainerImage {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl k8s_openapi::Resource for HostPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for HostPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn images(cs: &[k8s_openapi::api::core::v1::Container]) -> Vec<ContainerImage> {
    cs.iter()
        .map(|c| ContainerImage {
            name: c.name.clone(),
            image: c.image.clone(),
        })
        .collect()
}

impl From<&Pod> for HostPod {
    /// The projection of a whole pod (one the API returned for a create): the same value the
    /// cache would hold for it.
    fn from(p: &Pod) -> HostPod {
        let mut metadata = p.metadata.clone();
        metadata.managed_fields = None;
        HostPod {
            metadata,
            spec: p.spec.as_ref().map(|s| HostPodSpec {
                node_name: s.node_name.clone(),
                containers: images(&s.containers),
                init_containers: s.init_containers.as_deref().map(images),
                tolerations: s.tolerations.clone(),
                active_deadline_seconds: s.active_deadline_seconds,
            }),
            status: p.status.clone(),
        }
    }
}

impl HostPod {
    /// The node the pod is bound to, if any.
    pub fn node_name(&self) -> Option<&str> {
        self.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full_pod() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-x-acme", "namespace": "tenant-acme", "uid": "h-1",
                "labels": {"vcsync.io/managed-by": "acme"},
                "managedFields": [{"manager": "vcsync", "operation": "Update"}]},
            "spec": {
                "nodeName": "node-1",
                "containers": [{"name": "app", "image": "nginx:1", "env": [{"name": "A", "value": "b"}],
                    "resources": {"requests": {"cpu": "10m"}}}],
                "initContainers": [{"name": "init", "image": "busybox"}],
                "volumes": [{"name": "v", "emptyDir": {}}],
                "tolerations": [{"key": "k", "operator": "Exists"}],
                "activeDeadlineSeconds": 30
            },
            "status": {"phase": "Running", "podIP": "10.0.0.5", "hostIP": "192.168.0.1"}
        })
    }

    #[test]
    fn decoding_keeps_only_what_the_syncs_read() {
        let h: HostPod = serde_json::from_value(full_pod()).expect("decodes");
        let spec = h.spec.as_ref().expect("spec");
        assert_eq!(h.node_name(), Some("node-1"));
        assert_eq!(
            spec.containers,
            [ContainerImage {
                name: "app".into(),
                image: Some("nginx:1".into())
            }]
        );
        assert_eq!(spec.init_containers.as_ref().map(Vec::len), Some(1));
        assert_eq!(spec.active_deadline_seconds, Some(30));
        assert_eq!(
            h.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
            Some("10.0.0.5")
        );
        // What is not read is not kept: the projection round-trips without env, volumes etc.
        let back = serde_json::to_value(&h).expect("encodes");
        assert!(back["spec"].get("volumes").is_none());
        assert!(back["spec"]["containers"][0].get("env").is_none());
    }

    #[test]
    fn the_projection_of_a_pod_equals_its_decoded_json() {
        let pod: Pod = serde_json::from_value(full_pod()).expect("a pod");
        let mut decoded: HostPod = serde_json::from_value(full_pod()).expect("decodes");
        decoded.metadata.managed_fields = None;
        assert_eq!(HostPod::from(&pod), decoded);
    }

    #[test]
    fn an_unscheduled_pod_has_no_node() {
        let h: HostPod =
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"nodeName": ""}}))
                .expect("decodes");
        assert_eq!(h.node_name(), None);
        let h: HostPod =
            serde_json::from_value(json!({"metadata": {"name": "p"}})).expect("decodes");
        assert_eq!(h.node_name(), None);
    }
}
