//! End-to-end: virtual pods run on the host through vcsync, and what happens there flows back.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use vcsync::markers;
use vcsync_e2e::harness::Harness;
use vcsync_e2e::testutil::{create_namespace, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn mk_pod(ns: &str, name: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
    }))
    .expect("valid pod")
}

#[tokio::test]
async fn a_virtual_pod_runs_on_the_host_and_reports_back() {
    let mut h = Harness::new("acme").await;
    create_namespace(&h.virt, "shop").await;
    h.start_engine();
    let vpods = h.virt_api::<Pod>("shop");
    let created = vpods
        .create(&PostParams::default(), &mk_pod("shop", "web"))
        .await
        .expect("virtual pod");

    let host_name = h.host_name("shop", "web");
    assert_eq!(host_name, "web-shop-acme-3-4");
    let hpods = h.host_api::<Pod>();
    let host = wait_for(WAIT, "the host pod", || {
        let hpods = hpods.clone();
        let host_name = host_name.clone();
        async move { hpods.get_opt(&host_name).await.ok().flatten() }
    })
    .await;
    let labels = host.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["app"], "web");
    assert_eq!(labels[markers::MANAGED_BY], "acme");
    let annotations = host.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations[markers::VIRTUAL_UID],
        created.metadata.uid.clone().unwrap()
    );
    let spec = host.spec.clone().unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("vcsync-workload")
    );
    assert_eq!(spec.automount_service_account_token, Some(false));

    // The SA token Secret holds a token minted by the virtual API, owned by the host pod.
    let secrets = h.host_api::<Secret>();
    let token = wait_for(WAIT, "the token secret", || {
        let secrets = secrets.clone();
        let name = format!("{host_name}-sa-token");
        async move { secrets.get_opt(&name).await.ok().flatten() }
    })
    .await;
    assert_eq!(
        token.metadata.owner_references.unwrap()[0].uid,
        host.metadata.uid.clone().unwrap()
    );
    let jwt = String::from_utf8(token.data.unwrap()["token-0"].0.clone()).unwrap();
    assert_eq!(jwt.split('.').count(), 3, "a JWT: {jwt}");

    // Running on the host -> Running, bound and addressed in the virtual API.
    let vp = wait_for(WAIT, "the virtual pod to be Running", || {
        let vpods = vpods.clone();
        async move {
            let p = vpods.get("web").await.ok()?;
            let running = p.status.as_ref()?.phase.as_deref() == Some("Running");
            running.then_some(p)
        }
    })
    .await;
    let hp = hpods.get(&host_name).await.unwrap();
    assert_eq!(vp.spec.unwrap().node_name, hp.spec.unwrap().node_name);
    assert_eq!(
        vp.status.as_ref().unwrap().pod_ip,
        hp.status.as_ref().unwrap().pod_ip
    );

    // Graceful virtual delete: host pod goes, then the virtual pod is finalized.
    vpods.delete("web", &DeleteParams::default()).await.unwrap();
    wait_for(WAIT, "both pods to be gone", || {
        let (vpods, hpods, host_name) = (vpods.clone(), hpods.clone(), host_name.clone());
        async move {
            let v = vpods.get_opt("web").await.ok()?;
            let hp = hpods.get_opt(&host_name).await.ok()?;
            (v.is_none() && hp.is_none()).then_some(())
        }
    })
    .await;
    h.stop_engine().await;
}

#[tokio::test]
async fn host_pods_of_deleted_virtual_pods_are_collected_after_a_restart() {
    let mut h = Harness::new("gc").await;
    create_namespace(&h.virt, "apps").await;
    h.start_engine();
    let vpods = h.virt_api::<Pod>("apps");
    vpods
        .create(&PostParams::default(), &mk_pod("apps", "keep"))
        .await
        .unwrap();
    vpods
        .create(&PostParams::default(), &mk_pod("apps", "drop"))
        .await
        .unwrap();
    let hpods = h.host_api::<Pod>();
    for name in ["keep", "drop"] {
        let hn = h.host_name("apps", name);
        wait_for(WAIT, "host pods", || {
            let (hpods, hn) = (hpods.clone(), hn.clone());
            async move { hpods.get_opt(&hn).await.ok().flatten() }
        })
        .await;
    }
    h.stop_engine().await;
    // Deleted while vcsync is down: forced, so no graceful phase waits for vcsync.
    vpods
        .delete("drop", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    h.start_engine();
    let gone = h.host_name("apps", "drop");
    wait_for(WAIT, "the orphaned host pod to be deleted", || {
        let (hpods, gone) = (hpods.clone(), gone.clone());
        async move {
            hpods
                .get_opt(&gone)
                .await
                .ok()
                .and_then(|p| p.is_none().then_some(()))
        }
    })
    .await;
    assert!(
        hpods
            .get_opt(&h.host_name("apps", "keep"))
            .await
            .unwrap()
            .is_some()
    );
    h.stop_engine().await;
}

#[tokio::test]
async fn service_account_tokens_are_refreshed() {
    let mut h = Harness::new("tok").await;
    create_namespace(&h.virt, "apps").await;
    h.start_engine();
    let vpods = h.virt_api::<Pod>("apps");
    vpods
        .create(&PostParams::default(), &mk_pod("apps", "p"))
        .await
        .unwrap();
    let secrets = h.host_api::<Secret>();
    let name = format!("{}-sa-token", h.host_name("apps", "p"));
    let first = wait_for(WAIT, "the token secret", || {
        let (secrets, name) = (secrets.clone(), name.clone());
        async move { secrets.get_opt(&name).await.ok().flatten() }
    })
    .await;
    let refresh_at: i64 =
        first.metadata.annotations.as_ref().unwrap()["vcsync.io/token-refresh-at"]
            .parse()
            .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // 80% of the 3607 s lifetime the ServiceAccount admission asks for.
    assert!(
        (now + 2800..=now + 2900).contains(&refresh_at),
        "refresh at {refresh_at}, now {now}"
    );
    // Pretend the refresh time has come: vcsync mints a new token.
    secrets
        .patch(
            &name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(
                json!({"metadata": {"annotations": {"vcsync.io/token-refresh-at": "1"}}}),
            ),
        )
        .await
        .unwrap();
    let old = first.data.unwrap()["token-0"].clone();
    wait_for(WAIT, "a new token", || {
        let (secrets, name, old) = (secrets.clone(), name.clone(), old.clone());
        async move {
            let s = secrets.get(&name).await.ok()?;
            let refreshed = s
                .metadata
                .annotations
                .as_ref()?
                .get("vcsync.io/token-refresh-at")?
                != "1";
            (refreshed && s.data?.get("token-0")? != &old).then_some(())
        }
    })
    .await;
    h.stop_engine().await;
}

#[tokio::test]
async fn a_busy_namespace_does_not_starve_a_quiet_one() {
    let mut h = Harness::new("fair").await;
    let Some(hs) = &h.host_server else {
        eprintln!(
            "needs the test API server's latency injection: not checked against real clusters"
        );
        return;
    };
    // Slow host requests make the burst's backlog last a while.
    hs.set_latency(Some(Duration::from_millis(15)));
    create_namespace(&h.virt, "busy").await;
    create_namespace(&h.virt, "quiet").await;
    let busy = h.virt_api::<Pod>("busy");
    const BURST: usize = 150;
    for i in 0..BURST {
        busy.create(&PostParams::default(), &mk_pod("busy", &format!("b{i}")))
            .await
            .unwrap();
    }
    h.start_engine();
    let hpods = h.host_api::<Pod>();
    let count_busy = || {
        let hpods = hpods.clone();
        async move {
            let lp = kube::api::ListParams::default()
                .labels(&format!("{}=busy", markers::VIRTUAL_NAMESPACE_LABEL));
            hpods.list(&lp).await.map(|l| l.items.len()).unwrap_or(0)
        }
    };
    // The burst is under way...
    wait_for(WAIT, "the burst to start", || {
        let c = count_busy();
        async move { (c.await > 0).then_some(()) }
    })
    .await;
    // ...when the quiet namespace creates one pod: it is served long before the backlog ends.
    let quiet = h.virt_api::<Pod>("quiet");
    quiet
        .create(&PostParams::default(), &mk_pod("quiet", "q"))
        .await
        .unwrap();
    let qname = h.host_name("quiet", "q");
    wait_for(Duration::from_secs(60), "the quiet pod on the host", || {
        let (hpods, qname) = (hpods.clone(), qname.clone());
        async move { hpods.get_opt(&qname).await.ok().flatten() }
    })
    .await;
    let done = count_busy().await;
    assert!(
        done < BURST / 2,
        "the quiet pod waited for {done} of {BURST} busy pods"
    );
    if let Some(hs) = &h.host_server {
        hs.set_latency(None);
    }
    h.stop_engine().await;
}

#[tokio::test]
async fn each_pod_costs_one_token_request_and_one_token_secret() {
    let mut h = Harness::new("tok").await;
    if h.host_server.is_none() || h.virtual_server.is_none() {
        eprintln!("counting requests needs the test API servers; skipped against real clusters");
        return;
    }
    create_namespace(&h.virt, "batch").await;
    h.start_engine();
    const N: usize = 20;
    let vpods = h.virt_api::<Pod>("batch");
    for i in 0..N {
        vpods
            .create(&PostParams::default(), &mk_pod("batch", &format!("p{i}")))
            .await
            .expect("virtual pod");
    }
    wait_for(WAIT, "every virtual pod Running", || {
        let vpods = vpods.clone();
        async move {
            let list = vpods.list(&Default::default()).await.ok()?;
            let running = list
                .items
                .iter()
                .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
                .count();
            (running == N).then_some(())
        }
    })
    .await;
    h.wait_quiet(Duration::from_millis(500), WAIT).await;
    // The write budget of a pod's tokens. Under load (the `latency` benchmark) the host pod's
    // own watch event used to re-queue the pod before the new token Secret reached the cache,
    // and that reconcile minted the tokens again (409 on the Secret). This harness is too fast
    // to reproduce that race (the test passes without the fix too): it guards the budget, and
    // the benchmark's itemised writes show the race.
    let by_engine =
        |counts: Vec<(vcsync_e2e::apiserver::RequestCount, u64)>, verb: &str, resource: &str| {
            counts
                .into_iter()
                .filter(|(k, _)| {
                    k.user == vcsync_e2e::harness::ENGINE_USER
                        && k.verb == verb
                        && k.resource == resource
                })
                .map(|(k, n)| (k.code, n))
                .collect::<Vec<_>>()
        };
    let (hs, vs) = (
        h.host_server.as_ref().unwrap(),
        h.virtual_server.as_ref().unwrap(),
    );
    assert_eq!(
        by_engine(vs.request_counts(), "create", "serviceaccounts/token"),
        vec![(201, N as u64)],
        "one TokenRequest per pod"
    );
    assert_eq!(
        by_engine(hs.request_counts(), "create", "secrets"),
        vec![(201, N as u64)],
        "one token Secret create per pod, none refused with 409"
    );
    h.stop_engine().await;
}
