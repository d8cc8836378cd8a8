//! Nothing waits silently: a pod held back because the tenant API Service is missing gets a
//! Warning Event saying what it waits for, and the wait is counted in the metrics.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use vcsync_e2e::harness::{API_SERVICE, Harness};
use vcsync_e2e::testutil::wait_for;

#[tokio::test]
async fn a_pod_waiting_for_the_tenant_api_service_says_so() {
    let mut h = Harness::new("waits").await;
    // A hand-made install without the tenant API Service (or a typo in --api-service).
    h.host_api::<Service>()
        .delete(API_SERVICE, &DeleteParams::default())
        .await
        .unwrap();
    h.start_engine();
    let pods: Api<Pod> = h.virt_api("default");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "held"},
            "spec": {"containers": [{"name": "app", "image": "busybox"}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let events: Api<Event> = h.virt_api("default");
    let event = wait_for(
        Duration::from_secs(90),
        "a Waiting event on the pod",
        || async {
            events
                .list(&ListParams::default().fields("involvedObject.name=held"))
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.reason.as_deref() == Some("Waiting"))
        },
    )
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let msg = event.message.unwrap_or_default();
    assert!(msg.contains(API_SERVICE), "{msg}");
    // Nothing reached the host meanwhile.
    assert!(
        h.host_api::<Pod>()
            .get_opt(&h.host_name("default", "held"))
            .await
            .unwrap()
            .is_none()
    );
    h.stop_engine().await;
}
