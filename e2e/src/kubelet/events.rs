//! core/v1 Events shaped like the ones the default scheduler and the kubelet record.

use std::sync::atomic::{AtomicU64, Ordering};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};

/// Keeps event names unique when two are built within the same nanosecond.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn pod_reference(pod: &Pod, field_path: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path,
    }
}

/// `<object name>.<unix nanos in hex>`, as client-go's recorder names events.
fn event_name(pod: &Pod, now: Timestamp) -> String {
    let nanos = u128::try_from(now.as_nanosecond()).unwrap_or_default()
        + u128::from(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    format!(
        "{}.{nanos:x}",
        pod.metadata.name.as_deref().unwrap_or("pod")
    )
}

fn meta(pod: &Pod, now: Timestamp) -> ObjectMeta {
    ObjectMeta {
        name: Some(event_name(pod, now)),
        namespace: pod.metadata.namespace.clone(),
        ..Default::default()
    }
}

/// The scheduler's `Scheduled` event. The scheduler records through the events.k8s.io API, so
/// seen through core/v1 it has `eventTime`, `action` and reporting fields instead of
/// first/last timestamps.
pub fn scheduled(pod: &Pod, node: &str, now: Timestamp) -> Event {
    Event {
        metadata: meta(pod, now),
        involved_object: pod_reference(pod, None),
        reason: Some("Scheduled".into()),
        message: Some(format!(
            "Successfully assigned {}/{} to {node}",
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or("")
        )),
        type_: Some("Normal".into()),
        action: Some("Binding".into()),
        event_time: Some(MicroTime(now)),
        reporting_component: Some("default-scheduler".into()),
        reporting_instance: Some("default-scheduler-kubelet-sim".into()),
        source: Some(EventSource::default()),
        ..Default::default()
    }
}

/// The scheduler's `FailedScheduling` warning.
pub fn failed_scheduling(pod: &Pod, message: &str, now: Timestamp) -> Event {
    Event {
        reason: Some("FailedScheduling".into()),
        message: Some(message.to_owned()),
        type_: Some("Warning".into()),
        action: Some("Scheduling".into()),
        ..scheduled(pod, "", now)
    }
}

/// A kubelet event about one container (`Pulled`, `Created`, `Started`, `Killing`), recorded
/// the legacy way: `source`, `count` and first/last timestamps.
pub fn kubelet_container_event(
    pod: &Pod,
    node: &str,
    container: &str,
    kind: ContainerEvent,
    now: Timestamp,
) -> Event {
    let spec = pod.spec.as_ref();
    let init = spec
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
        .iter()
        .find(|c| c.name == container);
    let main = spec.and_then(|s| s.containers.iter().find(|c| c.name == container));
    let field_path = if init.is_some() && main.is_none() {
        format!("spec.initContainers{{{container}}}")
    } else {
        format!("spec.containers{{{container}}}")
    };
    let image = main
        .or(init)
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let (reason, message) = match kind {
        ContainerEvent::Pulled => (
            "Pulled",
            format!("Container image \"{image}\" already present on machine"),
        ),
        ContainerEvent::Created => ("Created", format!("Created container: {container}")),
        ContainerEvent::Started => ("Started", format!("Started container {container}")),
        ContainerEvent::Killing => ("Killing", format!("Stopping container {container}")),
    };
    Event {
        metadata: meta(pod, now),
        involved_object: pod_reference(pod, Some(field_path)),
        reason: Some(reason.into()),
        message: Some(message),
        type_: Some("Normal".into()),
        source: Some(EventSource {
            component: Some("kubelet".into()),
            host: Some(node.to_owned()),
        }),
        reporting_component: Some("kubelet".into()),
        reporting_instance: Some(node.to_owned()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        count: Some(1),
        ..Default::default()
    }
}

/// The container events the kubelet records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerEvent {
    /// Image present.
    Pulled,
    /// Container created.
    Created,
    /// Container started.
    Started,
    /// Container being stopped for a deletion.
    Killing,
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use rstest::rstest;

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns1".into()),
                uid: Some("u".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("nginx:1.27".into()),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: None,
        }
    }

    #[test]
    fn scheduled_event() {
        let e = scheduled(&pod(), "n1", Timestamp::now());
        assert_eq!(
            e.message.as_deref(),
            Some("Successfully assigned ns1/web to n1")
        );
        assert_eq!(e.metadata.namespace.as_deref(), Some("ns1"));
        assert!(e.metadata.name.unwrap().starts_with("web."));
        assert_eq!(e.involved_object.uid.as_deref(), Some("u"));
        assert_eq!(e.reporting_component.as_deref(), Some("default-scheduler"));
    }

    #[rstest]
    #[case(
        ContainerEvent::Pulled,
        "Pulled",
        "Container image \"nginx:1.27\" already present on machine"
    )]
    #[case(ContainerEvent::Created, "Created", "Created container: app")]
    #[case(ContainerEvent::Started, "Started", "Started container app")]
    #[case(ContainerEvent::Killing, "Killing", "Stopping container app")]
    fn kubelet_events(#[case] kind: ContainerEvent, #[case] reason: &str, #[case] message: &str) {
        let e = kubelet_container_event(&pod(), "n1", "app", kind, Timestamp::now());
        assert_eq!(e.reason.as_deref(), Some(reason));
        assert_eq!(e.message.as_deref(), Some(message));
        assert_eq!(e.source.unwrap().component.as_deref(), Some("kubelet"));
        assert_eq!(
            e.involved_object.field_path.as_deref(),
            Some("spec.containers{app}")
        );
    }

    #[test]
    fn names_are_unique() {
        let now = Timestamp::now();
        let a = scheduled(&pod(), "n", now).metadata.name;
        let b = scheduled(&pod(), "n", now).metadata.name;
        assert_ne!(a, b);
    }
}
