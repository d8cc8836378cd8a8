//! End-to-end: persistent storage through vcsync. Claims (as a StatefulSet's controller makes
//! them) are provisioned on the host by the provisioner simulator and become Bound on both
//! sides; forbidden claims are refused; expansion goes down and status up; generic ephemeral
//! volumes yield exactly one host claim; deletion waits for the pod; a restart writes nothing.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use vcsync::markers;
use vcsync_e2e::harness::{Harness, STORAGE_CLASSES};
use vcsync_e2e::testutil::{create_namespace, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn obj<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid object")
}

fn claim(name: &str, extra: Value) -> PersistentVolumeClaim {
    let mut spec =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    for (k, v) in extra.as_object().expect("an object") {
        spec[k] = v.clone();
    }
    obj(json!({"metadata": {"name": name}, "spec": spec}))
}

fn pod_with(name: &str, volume: Value) -> Pod {
    obj(json!({"metadata": {"name": name}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [volume],
    }}))
}

fn pod_with_claim(name: &str, claim: &str) -> Pod {
    pod_with(
        name,
        json!({"name": "data", "persistentVolumeClaim": {"claimName": claim}}),
    )
}

fn phase(c: &PersistentVolumeClaim) -> Option<&str> {
    c.status.as_ref()?.phase.as_deref()
}

fn capacity(c: &PersistentVolumeClaim) -> Option<String> {
    Some(
        c.status
            .as_ref()?
            .capacity
            .as_ref()?
            .get("storage")?
            .0
            .clone(),
    )
}

async fn get_when<K, F>(api: &Api<K>, name: &str, what: &str, ok: F) -> K
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
    F: Fn(&K) -> bool,
{
    let ok = &ok;
    wait_for(WAIT, what, || {
        let (api, name) = (api.clone(), name.to_string());
        async move { api.get_opt(&name).await.ok().flatten().filter(|o| ok(o)) }
    })
    .await
}

async fn gone<K>(api: &Api<K>, name: &str, what: &str)
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    wait_for(WAIT, what, || {
        let (api, name) = (api.clone(), name.to_string());
        async move { matches!(api.get_opt(&name).await, Ok(None)).then_some(()) }
    })
    .await
}

async fn bound_both_sides(
    h: &Harness,
    ns: &str,
    name: &str,
) -> (PersistentVolumeClaim, PersistentVolumeClaim) {
    let hc: Api<PersistentVolumeClaim> = h.host_api();
    let vc: Api<PersistentVolumeClaim> = h.virt_api(ns);
    let host = get_when(&hc, &h.host_name(ns, name), "the host claim Bound", |c| {
        phase(c) == Some("Bound")
    })
    .await;
    let virt = get_when(&vc, name, "the virtual claim Bound", |c| {
        phase(c) == Some("Bound")
    })
    .await;
    (host, virt)
}

async fn event(h: &Harness, ns: &str, name: &str, reason: &str) -> String {
    let events: Api<Event> = h.virt_api(ns);
    wait_for(WAIT, &format!("a {reason} event on {name}"), || {
        let (events, name, reason) = (events.clone(), name.to_string(), reason.to_string());
        async move {
            events
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .find_map(|e| {
                    let about = e.regarding.as_ref()?.name.as_deref()? == name;
                    (about && e.reason.as_deref() == Some(reason.as_str()))
                        .then(|| e.note.unwrap_or_default())
                })
        }
    })
    .await
}

async fn running(h: &Harness, ns: &str, name: &str) {
    let vp: Api<Pod> = h.virt_api(ns);
    get_when(&vp, name, &format!("virtual pod {name} Running"), |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
}

#[tokio::test]
async fn statefulset_claims_bind_on_both_sides_and_the_pods_run() {
    let mut h = Harness::new("sts").await;
    create_namespace(&h.virt, "db").await;
    h.start_engine();
    let vc: Api<PersistentVolumeClaim> = h.virt_api("db");
    let vp: Api<Pod> = h.virt_api("db");
    // As the StatefulSet controller does: the claims of each ordinal, then the pods. db-1's
    // claim names no class (the policy's default) and db-2's waits for its first consumer.
    let classes = [
        json!({"storageClassName": STORAGE_CLASSES[0]}),
        json!({}),
        json!({"storageClassName": STORAGE_CLASSES[1]}),
    ];
    for (i, extra) in classes.iter().enumerate() {
        vc.create(
            &PostParams::default(),
            &claim(&format!("data-db-{i}"), extra.clone()),
        )
        .await
        .unwrap();
        vp.create(
            &PostParams::default(),
            &pod_with_claim(&format!("db-{i}"), &format!("data-db-{i}")),
        )
        .await
        .unwrap();
    }
    let pvs: Api<PersistentVolume> = Api::all(h.virt.clone());
    for i in 0..3 {
        let name = format!("data-db-{i}");
        let (host, virt) = bound_both_sides(&h, "db", &name).await;
        let hs = host.spec.as_ref().unwrap();
        assert_eq!(
            hs.storage_class_name.as_deref(),
            Some(if i == 2 {
                STORAGE_CLASSES[1]
            } else {
                STORAGE_CLASSES[0]
            }),
            "the resolved class is written explicitly"
        );
        assert_eq!(
            host.labels().get(markers::MANAGED_BY).map(String::as_str),
            Some("sts")
        );
        let host_pv = hs.volume_name.clone().expect("the host claim is bound");
        assert_eq!(
            virt.spec.as_ref().unwrap().volume_name.as_deref(),
            Some(host_pv.as_str()),
            "the virtual claim names the virtual volume named like the host one"
        );
        assert_eq!(capacity(&virt).as_deref(), Some("1Gi"));
        let pv = pvs.get(&host_pv).await.expect("the virtual volume");
        let spec = pv.spec.unwrap();
        let r = spec.claim_ref.unwrap();
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (
                Some("db"),
                Some(name.as_str()),
                virt.metadata.uid.as_deref()
            )
        );
        assert_eq!(spec.csi.unwrap().driver, "vcsync.io/host");
        assert!(spec.host_path.is_none() && spec.node_affinity.is_none());
        running(&h, "db", &format!("db-{i}")).await;
        // The host pod mounts the host copy.
        let hp: Api<Pod> = h.host_api();
        let pod = hp
            .get(&h.host_name("db", &format!("db-{i}")))
            .await
            .unwrap();
        let claim_name = pod.spec.unwrap().volumes.unwrap()[0]
            .persistent_volume_claim
            .clone()
            .unwrap()
            .claim_name;
        assert_eq!(claim_name, h.host_name("db", &name));
    }
    // The WaitForFirstConsumer claim was provisioned for the node its pod runs on.
    let hc: Api<PersistentVolumeClaim> = h.host_api();
    let wffc = hc.get(&h.host_name("db", "data-db-2")).await.unwrap();
    assert!(
        wffc.annotations()
            .contains_key(vcsync_e2e::provisioner::SELECTED_NODE)
    );

    // A restart over synced claims writes nothing.
    h.wait_quiet(Duration::from_millis(700), WAIT).await;
    h.stop_engine().await;
    h.reset_counts();
    h.start_engine();
    h.wait_quiet(Duration::from_millis(1500), WAIT).await;
    if let Some(writes) = h.engine_writes() {
        assert_eq!(writes, (0, 0), "a restart over bound claims writes nothing");
    }
}

use kube::ResourceExt;

#[tokio::test]
async fn forbidden_claims_are_refused_and_nothing_reaches_the_host() {
    let mut h = Harness::new("deny").await;
    create_namespace(&h.virt, "app").await;
    h.start_engine();
    let vc: Api<PersistentVolumeClaim> = h.virt_api("app");
    let cases = [
        (
            "other-class",
            json!({"storageClassName": "local-storage"}),
            "storage.class",
        ),
        (
            "named",
            json!({"storageClassName": STORAGE_CLASSES[0], "volumeName": "pvc-host"}),
            "volumeName",
        ),
        (
            "selected",
            json!({"storageClassName": STORAGE_CLASSES[0], "selector": {"matchLabels": {"tier": "gold"}}}),
            "selector",
        ),
    ];
    for (name, extra, _) in &cases {
        vc.create(&PostParams::default(), &claim(name, extra.clone()))
            .await
            .unwrap();
    }
    // A good claim beside them still syncs.
    vc.create(&PostParams::default(), &claim("ok", json!({})))
        .await
        .unwrap();
    bound_both_sides(&h, "app", "ok").await;
    for (name, _, needle) in &cases {
        let note = event(&h, "app", name, "PolicyViolation").await;
        assert!(note.contains(needle), "{name}: {note}");
    }
    let hc: Api<PersistentVolumeClaim> = h.host_api();
    let host: Vec<String> = hc
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    assert_eq!(
        host,
        vec![h.host_name("app", "ok")],
        "only the allowed claim is on the host"
    );
}

/// Wait for vcsync's virtual StorageClasses: the virtual API's admission reads them (the
/// default class for claims without one, `allowVolumeExpansion` for a resize).
async fn classes_ready(h: &Harness) {
    let scs: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(h.virt.clone());
    for c in STORAGE_CLASSES {
        get_when(&scs, c, "the virtual storage class", |_| true).await;
    }
}

#[tokio::test]
async fn expansion_goes_down_and_the_new_capacity_comes_up() {
    let mut h = Harness::new("grow").await;
    create_namespace(&h.virt, "app").await;
    h.start_engine();
    classes_ready(&h).await;
    let vc: Api<PersistentVolumeClaim> = h.virt_api("app");
    vc.create(&PostParams::default(), &claim("data", json!({})))
        .await
        .unwrap();
    bound_both_sides(&h, "app", "data").await;
    vc.patch(
        "data",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})),
    )
    .await
    .unwrap();
    let hc: Api<PersistentVolumeClaim> = h.host_api();
    get_when(
        &hc,
        &h.host_name("app", "data"),
        "the host claim grown",
        |c| capacity(c).as_deref() == Some("2Gi"),
    )
    .await;
    let v = get_when(&vc, "data", "the virtual claim's new capacity", |c| {
        capacity(c).as_deref() == Some("2Gi")
    })
    .await;
    let status = v.status.unwrap();
    assert!(
        status.conditions.unwrap_or_default().is_empty(),
        "the resize finished"
    );
    assert_eq!(phase_str(status.phase), "Bound");

    // A class without expansion: the host refuses, the tenant is told, nothing loops.
    vc.create(
        &PostParams::default(),
        &claim("fixed", json!({"storageClassName": STORAGE_CLASSES[2]})),
    )
    .await
    .unwrap();
    bound_both_sides(&h, "app", "fixed").await;
    vc.patch(
        "fixed",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}})),
    )
    .await
    .unwrap();
    let note = event(&h, "app", "fixed", "SyncFailed").await;
    assert!(note.contains("must support resize"), "{note}");
    let host = hc.get(&h.host_name("app", "fixed")).await.unwrap();
    assert_eq!(capacity(&host).as_deref(), Some("1Gi"));
}

fn phase_str(p: Option<String>) -> String {
    p.unwrap_or_default()
}

#[tokio::test]
async fn an_ephemeral_volume_yields_exactly_one_host_claim() {
    let mut h = Harness::new("eph").await;
    create_namespace(&h.virt, "app").await;
    h.start_engine();
    let vp: Api<Pod> = h.virt_api("app");
    vp.create(
        &PostParams::default(),
        &pod_with(
            "web",
            json!({"name": "data", "ephemeral": {"volumeClaimTemplate": {"spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}}),
        ),
    )
    .await
    .unwrap();
    // The virtual control plane made `web-data`; vcsync synced it; the host pod mounts it.
    bound_both_sides(&h, "app", "web-data").await;
    running(&h, "app", "web").await;
    let hp: Api<Pod> = h.host_api();
    let pod = hp.get(&h.host_name("app", "web")).await.unwrap();
    let vol = &pod.spec.unwrap().volumes.unwrap()[0];
    assert!(vol.ephemeral.is_none());
    assert_eq!(
        vol.persistent_volume_claim.as_ref().unwrap().claim_name,
        h.host_name("app", "web-data")
    );
    h.wait_quiet(Duration::from_millis(500), WAIT).await;
    let hc: Api<PersistentVolumeClaim> = h.host_api();
    let claims = hc.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(claims.len(), 1, "exactly one host claim: {claims:?}");
}

#[tokio::test]
async fn deleting_a_claim_in_use_waits_for_the_pod() {
    let mut h = Harness::new("del").await;
    create_namespace(&h.virt, "app").await;
    h.start_engine();
    let vc: Api<PersistentVolumeClaim> = h.virt_api("app");
    let vp: Api<Pod> = h.virt_api("app");
    vc.create(&PostParams::default(), &claim("data", json!({})))
        .await
        .unwrap();
    vp.create(&PostParams::default(), &pod_with_claim("web", "data"))
        .await
        .unwrap();
    let (host, virt) = bound_both_sides(&h, "app", "data").await;
    running(&h, "app", "web").await;
    let pv = virt.spec.unwrap().volume_name.unwrap();
    vc.delete("data", &DeleteParams::default()).await.unwrap();
    // Both claims stay (Terminating) while the pods use them.
    let hc: Api<PersistentVolumeClaim> = h.host_api();
    let host_name = host.name_any();
    get_when(&hc, &host_name, "the host claim Terminating", |c| {
        c.metadata.deletion_timestamp.is_some()
    })
    .await;
    h.wait_quiet(Duration::from_millis(500), WAIT).await;
    let still = hc
        .get(&host_name)
        .await
        .expect("kept while the host pod runs");
    assert!(
        still
            .finalizers()
            .iter()
            .any(|f| f == "kubernetes.io/pvc-protection")
    );
    assert!(
        vc.get("data").await.is_ok(),
        "the virtual claim waits for its pod too"
    );
    // The pod goes: then the claims, the host volume and the virtual volume go, nothing stuck.
    vp.delete("web", &DeleteParams::default()).await.unwrap();
    gone(&vc, "data", "the virtual claim deleted").await;
    gone(&hc, &host_name, "the host claim deleted").await;
    let pvs: Api<PersistentVolume> = Api::all(h.virt.clone());
    gone(&pvs, &pv, "the virtual volume deleted").await;
    let host_pvs: Api<PersistentVolume> = Api::all(h.host.clone());
    gone(&host_pvs, &pv, "the host volume reclaimed").await;
}

#[tokio::test]
async fn the_allowed_storage_classes_appear_in_the_virtual_cluster() {
    let mut h = Harness::new("sc").await;
    h.start_engine();
    let scs: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(h.virt.clone());
    let want: Vec<(String, bool)> = {
        let mut w: Vec<(String, bool)> = STORAGE_CLASSES
            .iter()
            .map(|c| (c.to_string(), *c == STORAGE_CLASSES[0]))
            .collect();
        w.sort();
        w
    };
    let got = wait_for(WAIT, "the policy's storage classes", || {
        let scs = scs.clone();
        let want = want.clone();
        async move {
            let mut got: Vec<(String, bool)> = scs
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .map(|c| {
                    let default = c
                        .annotations()
                        .get("storageclass.kubernetes.io/is-default-class")
                        .is_some_and(|v| v == "true");
                    (c.name_any(), default)
                })
                .collect();
            got.sort();
            (got == want).then_some(got)
        }
    })
    .await;
    assert_eq!(got, want, "exactly the allowed classes, the default marked");
    // A claim without a class gets the default from the virtual API's admission.
    create_namespace(&h.virt, "app").await;
    let vc: Api<PersistentVolumeClaim> = h.virt_api("app");
    let c = vc
        .create(&PostParams::default(), &claim("data", json!({})))
        .await
        .unwrap();
    assert_eq!(
        c.spec.unwrap().storage_class_name.as_deref(),
        Some(STORAGE_CLASSES[0])
    );
}

#[tokio::test]
async fn a_claim_over_the_host_quota_gets_a_warning_event_and_no_loop() {
    let mut h = Harness::new("quota").await;
    let quotas: Api<k8s_openapi::api::core::v1::ResourceQuota> = h.host_api();
    quotas
        .create(
            &PostParams::default(),
            &obj(json!({"metadata": {"name": "storage"}, "spec": {"hard": {"requests.storage": "1Gi"}}})),
        )
        .await
        .unwrap();
    // The quota controller fills the status before admission counts against it.
    get_when(&quotas, "storage", "the quota status", |q| {
        q.status.as_ref().and_then(|s| s.hard.as_ref()).is_some()
    })
    .await;
    create_namespace(&h.virt, "app").await;
    h.start_engine();
    let vc: Api<PersistentVolumeClaim> = h.virt_api("app");
    vc.create(
        &PostParams::default(),
        &claim(
            "big",
            json!({"resources": {"requests": {"storage": "5Gi"}}}),
        ),
    )
    .await
    .unwrap();
    let note = event(&h, "app", "big", "SyncFailed").await;
    assert!(note.contains("exceeded quota"), "{note}");
    // Refused, then left alone until something changes: no retry loop.
    h.wait_quiet(Duration::from_millis(500), WAIT).await;
    h.reset_counts();
    h.wait_quiet(Duration::from_millis(1500), WAIT).await;
    if let Some(writes) = h.engine_writes() {
        assert_eq!(writes, (0, 0), "no write loop after a quota refusal");
    }
    let hc: Api<PersistentVolumeClaim> = h.host_api();
    assert!(
        hc.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
