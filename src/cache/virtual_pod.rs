//! The virtual pod as vcsync caches it: decoded metadata, the spec and status kept as the JSON
//! the virtual API sent.
//!
//! Translation reads the whole spec, but only while a pod is reconciled; in between, the cached
//! pod is only looked up by name and uid. Held as k8s-openapi values, spec and status cost about
//! seven times their JSON on the heap; held as JSON text they cost their length. The pod sync
//! decodes them once per reconcile ([`VirtualPod::pod`]).
//!
//! It is a `Resource` of kind `Pod` (`v1`, `pods`), so kube-runtime's watcher, reflector and
//! `Api` work on it unchanged; it serializes back to the JSON it was read from.

use k8s_openapi::api::core::v1::{Pod, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Why a cached pod could not be decoded (its JSON was read from the API, so this means a
/// field of a type k8s-openapi does not accept).
#[derive(Debug, thiserror::Error)]
#[error("decoding cached virtual pod {key}: {source}")]
pub struct DecodeError {
    pub key: String,
    pub source: serde_json::Error,
}

/// A virtual pod, as cached.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct VirtualPod {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<Box<RawValue>>,
    #[serde(default)]
    status: Option<Box<RawValue>>,
}

impl Serialize for VirtualPod {
    /// As k8s-openapi serializes a `Pod`: with `apiVersion` and `kind`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Pod", 5)?;
        st.serialize_field("apiVersion", <Pod as k8s_openapi::Resource>::API_VERSION)?;
        st.serialize_field("kind", <Pod as k8s_openapi::Resource>::KIND)?;
        st.serialize_field("metadata", &self.metadata)?;
        if let Some(spec) = &self.spec {
            st.serialize_field("spec", spec)?;
        }
        if let Some(status) = &self.status {
            st.serialize_field("status", status)?;
        }
        st.end()
    }
}

impl k8s_openapi::Resource for VirtualPod {
    const API_VERSION: &'static str = <Pod as k8s_openapi::Resource>::API_VERSION;
    const GROUP: &'static str = <Pod as k8s_openapi::Resource>::GROUP;
    const KIND: &'static str = <Pod as k8s_openapi::Resource>::KIND;
    const VERSION: &'static str = <Pod as k8s_openapi::Resource>::VERSION;
    const URL_PATH_SEGMENT: &'static str = <Pod as k8s_openapi::Resource>::URL_PATH_SEGMENT;
    type Scope = k8s_openapi::NamespaceResourceScope;
}

impl k8s_openapi::Metadata for VirtualPod {
    type Ty = ObjectMeta;

    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn raw<T: Serialize>(v: &Option<T>) -> Option<Box<RawValue>> {
    v.as_ref()
        .and_then(|v| serde_json::value::to_raw_value(v).ok())
}

impl From<&Pod> for VirtualPod {
    fn from(p: &Pod) -> VirtualPod {
        let mut metadata = p.metadata.clone();
        metadata.managed_fields = None;
        VirtualPod {
            metadata,
            spec: raw(&p.spec),
            status: raw(&p.status),
        }
    }
}

impl VirtualPod {
    fn key(&self) -> String {
        format!(
            "{}/{}",
            self.metadata.namespace.as_deref().unwrap_or_default(),
            self.metadata.name.as_deref().unwrap_or_default()
        )
    }

    fn decode<T: DeserializeOwned>(
        &self,
        raw: &Option<Box<RawValue>>,
    ) -> Result<Option<T>, DecodeError> {
        raw.as_ref()
            .map(|r| serde_json::from_str(r.get()))
            .transpose()
            .map_err(|source| DecodeError {
                key: self.key(),
                source,
            })
    }

    /// The whole pod.
    pub fn pod(&self) -> Result<Pod, DecodeError> {
        Ok(Pod {
            metadata: self.metadata.clone(),
            spec: self.decode::<PodSpec>(&self.spec)?,
            status: self.decode::<PodStatus>(&self.status)?,
        })
    }

    /// The spec decoded as `T`: a projection of [`PodSpec`] for readers that need a few fields.
    pub fn spec_as<T: DeserializeOwned>(&self) -> Result<Option<T>, DecodeError> {
        self.decode(&self.spec)
    }

    /// Bytes of JSON held for spec and status.
    pub fn raw_len(&self) -> usize {
        self.spec.as_ref().map_or(0, |r| r.get().len())
            + self.status.as_ref().map_or(0, |r| r.get().len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod_json() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "uid": "v-1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}]}],
                     "serviceAccountName": "default"},
            "status": {"phase": "Running", "hostIP": "192.168.0.1"}
        })
    }

    #[test]
    fn decodes_from_a_watch_event_and_a_list() {
        let line = format!(
            r#"{{"type":"ADDED","object":{}}}"#,
            serde_json::to_string(&pod_json()).unwrap()
        );
        let kube::core::WatchEvent::Added(p) =
            serde_json::from_str::<kube::core::WatchEvent<VirtualPod>>(&line).expect("an event")
        else {
            panic!("an ADDED event");
        };
        let want: Pod = serde_json::from_value(pod_json()).unwrap();
        assert_eq!(p.pod().unwrap(), want);
        let list = json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "7"},
                          "items": [pod_json()]});
        let l: kube::core::ObjectList<VirtualPod> =
            serde_json::from_str(&list.to_string()).expect("a list");
        assert_eq!(l.items[0].pod().unwrap(), want);
    }

    #[test]
    fn a_pod_round_trips_and_serializes_as_the_api_sent_it() {
        let want: Pod = serde_json::from_value(pod_json()).unwrap();
        let v = VirtualPod::from(&want);
        assert_eq!(v.pod().unwrap(), want);
        assert_eq!(serde_json::to_value(&v).unwrap(), pod_json());
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::to_value(&want).unwrap(),
            "serialized as k8s-openapi serializes the pod"
        );
        assert!(v.raw_len() > 0);
    }

    #[test]
    fn a_spec_of_the_wrong_shape_is_an_error_naming_the_pod() {
        let bad = json!({"metadata": {"name": "web", "namespace": "shop"}, "spec": {"containers": "nope"}});
        let v: VirtualPod =
            serde_json::from_str(&bad.to_string()).expect("raw JSON is not checked");
        let err = v.pod().expect_err("containers must be a list");
        assert!(
            err.to_string()
                .starts_with("decoding cached virtual pod shop/web: "),
            "{err}"
        );
    }
}
