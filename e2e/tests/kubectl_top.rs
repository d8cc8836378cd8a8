//! `kubectl top pods` and `kubectl top nodes` end to end: the real kubectl against the virtual
//! test API server, whose aggregator proxies `metrics.k8s.io` to vcsync's metrics API (the
//! APIService vcsync registers), which reads the host server's metrics-server-like
//! `PodMetrics` (each container's usage is its requests, so the figures are known).
//!
//! Also: the aggregator's `Available` condition and its 503 when the backend is gone.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
use vcsync_e2e::harness::Harness;
use vcsync_e2e::testutil::wait_for;

const WAIT: Duration = Duration::from_secs(90);
const LIMITED_TOKEN: &str = "limited-team-b-token";

/// Runs kubectl with `kubeconfig`: `(exit code, stdout, stderr)`.
async fn kubectl(home: &Path, kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let (home, kubeconfig) = (home.to_owned(), kubeconfig.to_owned());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .arg("--cache-dir")
            .arg(home.join("cache"))
            .args(&args)
            .env("HOME", &home)
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
            .current_dir(&home)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("kubectl runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("kubectl task")
}

/// The rows of kubectl's table output, each split on whitespace, without the header.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

fn r(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|s| s.to_string()).collect()
}

/// Polls `kubectl args` until it succeeds and its rows satisfy `ok`; returns the rows.
async fn top_until(
    home: &Path,
    kc: &Path,
    args: &[&str],
    what: &str,
    ok: impl Fn(&[Vec<String>]) -> bool,
) -> Vec<Vec<String>> {
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (code, out, err) = kubectl(home, kc, args).await;
        if code == 0 && ok(&rows(&out)) {
            return rows(&out);
        }
        last = format!("exit {code}\nstdout:\n{out}\nstderr:\n{err}\n(before: {last:.300})");
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what} from kubectl {args:?}: {last}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn pod(name: &str, labels: Value, containers: &[(&str, &str, &str)]) -> Pod {
    let containers: Vec<Value> = containers
        .iter()
        .map(|(n, cpu, mem)| {
            json!({"name": n, "image": "busybox",
                "resources": {"requests": {"cpu": cpu, "memory": mem}}})
        })
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": containers}
    }))
    .unwrap()
}

fn available(a: &APIService) -> Option<(String, String)> {
    a.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Available")
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

// kubectl runs as a blocking child process: the in-process servers need other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kubectl_top_pods_and_nodes_show_only_this_tenants_pods_through_the_aggregator() {
    let mut h = Harness::with_virtual_config(
        "ktop",
        ServerConfig {
            namespaced_token: Some((LIMITED_TOKEN.into(), "team-b".into())),
            ..ServerConfig::default()
        },
    )
    .await;
    let Some(vs) = h.virtual_server.as_ref() else {
        panic!("this test needs the test API servers (the aggregator is the virtual server's)");
    };
    let home = tempfile::tempdir().unwrap();
    let admin_kc = home.path().join("admin.kubeconfig");
    vs.write_kubeconfig(&admin_kc).unwrap();
    let limited_kc = home.path().join("limited.kubeconfig");
    std::fs::write(&limited_kc, vs.kubeconfig_yaml_for(LIMITED_TOKEN)).unwrap();
    h.start_engine();

    Api::<Namespace>::all(h.virt.clone())
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team-b"}})).unwrap(),
        )
        .await
        .unwrap();
    for api in [
        h.virt_api::<ServiceAccount>("team-b"),
        h.host_api::<ServiceAccount>(),
    ] {
        wait_for(WAIT, "the default service account", || async {
            api.get_opt("default").await.ok().flatten()
        })
        .await;
    }
    let (default_pods, team_b_pods) = (h.virt_api::<Pod>("default"), h.virt_api::<Pod>("team-b"));
    for p in [
        pod(
            "web",
            json!({"app": "web"}),
            &[("app", "150m", "20Mi"), ("side", "50m", "10Mi")],
        ),
        pod("api", json!({"app": "api"}), &[("app", "100m", "16Mi")]),
    ] {
        default_pods
            .create(&PostParams::default(), &p)
            .await
            .unwrap();
    }
    team_b_pods
        .create(
            &PostParams::default(),
            &pod("db", json!({"app": "db"}), &[("app", "250m", "30Mi")]),
        )
        .await
        .unwrap();
    // Host pods that are not this tenant's: an unmanaged one, and one claiming the tenant's
    // virtual pod under another tenant's label.
    let host_pods: Api<Pod> = h.host_api();
    host_pods
        .create(
            &PostParams::default(),
            &pod(
                "intruder",
                json!({"app": "web"}),
                &[("app", "900m", "90Mi")],
            ),
        )
        .await
        .unwrap();
    let mut impostor = pod(
        "impostor",
        json!({"vcsync.io/managed-by": "other"}),
        &[("app", "800m", "80Mi")],
    );
    impostor.metadata.annotations = Some(
        [
            ("vcsync.io/namespace", "default"),
            ("vcsync.io/name", "web"),
            ("vcsync.io/uid", "not-the-uid"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    );
    host_pods
        .create(&PostParams::default(), &impostor)
        .await
        .unwrap();

    // The virtual pods run, and on which virtual nodes.
    let mut node_of = BTreeMap::new();
    for (api, name) in [
        (&default_pods, "web"),
        (&default_pods, "api"),
        (&team_b_pods, "db"),
    ] {
        let node = wait_for(WAIT, "the virtual pod running on a node", || async {
            let p = api.get(name).await.ok()?;
            let running = p.status.as_ref()?.phase.as_deref() == Some("Running");
            running.then_some(())?;
            p.spec?.node_name
        })
        .await;
        node_of.insert(name, node);
    }
    // The substrate shows all five on the host, so hiding two is vcsync's doing.
    let host_metrics = format!(
        "/apis/metrics.k8s.io/v1beta1/namespaces/{}/pods",
        h.host_namespace
    );
    wait_for(WAIT, "host PodMetrics of all five pods", || async {
        let req = http::Request::get(&host_metrics).body(Vec::new()).unwrap();
        let list: Value = h.host.request(req).await.ok()?;
        (list["items"].as_array()?.len() == 5).then_some(())
    })
    .await;

    // The aggregator finds vcsync's backend available.
    let api_services: Api<APIService> = Api::all(h.virt.clone());
    wait_for(
        WAIT,
        "APIService v1beta1.metrics.k8s.io Available",
        || async {
            let a = api_services
                .get_opt("v1beta1.metrics.k8s.io")
                .await
                .ok()??;
            (available(&a)? == ("True".into(), "Passed".into())).then_some(())
        },
    )
    .await;
    let vs = h.virtual_server.as_ref().expect("test servers");
    vs.reset_counts();

    // kubectl top pods: the tenant's pods under their virtual names, each the sum of its
    // containers, never the host-only pods.
    let ns_rows = top_until(
        home.path(),
        &admin_kc,
        &["top", "pods", "-n", "default"],
        "both default pods",
        |r| r.len() == 2,
    )
    .await;
    assert_eq!(
        ns_rows,
        [r(&["api", "100m", "16Mi"]), r(&["web", "200m", "30Mi"])]
    );
    assert!(
        vs.count("list", Some("pods.metrics.k8s.io")) >= 1,
        "kubectl's request went through the aggregator: {:?}",
        vs.request_counts()
    );
    let all = top_until(
        home.path(),
        &admin_kc,
        &["top", "pods", "-A"],
        "the three tenant pods",
        |r| r.len() == 3,
    )
    .await;
    assert_eq!(
        all,
        [
            r(&["default", "api", "100m", "16Mi"]),
            r(&["default", "web", "200m", "30Mi"]),
            r(&["team-b", "db", "250m", "30Mi"]),
        ]
    );
    let (code, out, err) = kubectl(
        home.path(),
        &admin_kc,
        &["top", "pod", "web", "-n", "default"],
    )
    .await;
    assert_eq!(
        (code, rows(&out)),
        (0, vec![r(&["web", "200m", "30Mi"])]),
        "{err}"
    );
    let (code, out, err) = kubectl(
        home.path(),
        &admin_kc,
        &["top", "pods", "-n", "default", "-l", "app=api"],
    )
    .await;
    assert_eq!(
        (code, rows(&out)),
        (0, vec![r(&["api", "100m", "16Mi"])]),
        "{err}"
    );
    let (code, out, err) = kubectl(
        home.path(),
        &admin_kc,
        &["top", "pod", "web", "-n", "default", "--containers"],
    )
    .await;
    assert_eq!(
        (code, rows(&out)),
        (
            0,
            vec![
                r(&["web", "app", "150m", "20Mi"]),
                r(&["web", "side", "50m", "10Mi"])
            ]
        ),
        "{err}"
    );
    // Host names never resolve, not even the unmanaged pod's.
    for name in ["intruder", "impostor", &h.host_name("default", "web")] {
        let (code, out, err) = kubectl(
            home.path(),
            &admin_kc,
            &["top", "pod", name, "-n", "default"],
        )
        .await;
        assert_ne!(code, 0, "{name}: {out}");
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "{name}: {err}"
        );
    }

    // A user limited to team-b: allowed there, refused elsewhere with kubectl's Forbidden.
    let (code, out, err) =
        kubectl(home.path(), &limited_kc, &["top", "pods", "-n", "team-b"]).await;
    assert_eq!(
        (code, rows(&out)),
        (0, vec![r(&["db", "250m", "30Mi"])]),
        "{err}"
    );
    let (code, _, err) = kubectl(home.path(), &limited_kc, &["top", "pods", "-n", "default"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("Error from server (Forbidden): pods.metrics.k8s.io is forbidden: User \"system:serviceaccount:team-b:limited\" cannot list resource \"pods\" in API group \"metrics.k8s.io\" in the namespace \"default\""),
        "{err}"
    );
    let (code, _, err) = kubectl(home.path(), &limited_kc, &["top", "pods", "-A"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("Error from server (Forbidden)") && err.contains("at the cluster scope"),
        "{err}"
    );
    let (code, _, err) = kubectl(home.path(), &limited_kc, &["top", "nodes"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("Error from server (Forbidden): nodes.metrics.k8s.io is forbidden"),
        "{err}"
    );

    // kubectl top nodes: each virtual node is the sum of the tenant's pods on it (web 200m/30Mi,
    // api 100m/16Mi, db 250m/30Mi), never the host node's own figures.
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for (pod, (cpu, mem)) in [("web", (200, 30)), ("api", (100, 16)), ("db", (250, 30))] {
        let e = want.entry(node_of[pod].clone()).or_default();
        e.0 += cpu;
        e.1 += mem;
    }
    let nodes = top_until(
        home.path(),
        &admin_kc,
        &["top", "nodes"],
        "every virtual node",
        |r| r.len() == want.len(),
    )
    .await;
    let got: BTreeMap<String, (String, String)> = nodes
        .iter()
        .map(|row| (row[0].clone(), (row[1].clone(), row[3].clone())))
        .collect();
    let want_text: BTreeMap<String, (String, String)> = want
        .iter()
        .map(|(n, (c, m))| (n.clone(), (format!("{c}m"), format!("{m}Mi"))))
        .collect();
    assert_eq!(got, want_text, "{nodes:?}");
    let first = want.keys().next().unwrap().clone();
    let (code, out, err) = kubectl(home.path(), &admin_kc, &["top", "node", &first]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        rows(&out)[0][..2],
        [first.clone(), want_text[&first].0.clone()]
    );

    // The backend gone: the aggregator marks the APIService unavailable and answers 503, which
    // kubectl reports as the server being unable to handle the request.
    h.stop_engine().await;
    wait_for(
        WAIT,
        "APIService v1beta1.metrics.k8s.io unavailable",
        || async {
            let a = api_services
                .get_opt("v1beta1.metrics.k8s.io")
                .await
                .ok()??;
            (available(&a)? == ("False".into(), "FailedDiscoveryCheck".into())).then_some(())
        },
    )
    .await;
    let (code, _, err) = kubectl(home.path(), &admin_kc, &["top", "pods", "-n", "default"]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("ServiceUnavailable") || err.contains("Metrics API not available"),
        "{err}"
    );
    let req = http::Request::get("/apis/metrics.k8s.io/v1beta1/pods")
        .body(Vec::new())
        .unwrap();
    let e = h.virt.request_text(req).await.unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 503), "{e:?}");
}

/// The aggregator's `Available` condition says why, as kube-aggregator's available-condition
/// controller words it, and proxying refuses an unavailable APIService with a plain 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregator_reports_why_an_api_service_is_unavailable() {
    let s = TestApiServer::start(ServerConfig {
        resource_metrics: false,
        aggregator_interval: Duration::from_millis(100),
        ..ServerConfig::default()
    })
    .await
    .unwrap();
    let c = s.client();
    let api_services: Api<APIService> = Api::all(c.clone());
    api_services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "v1alpha1.example.vcsync.io"},
                "spec": {"group": "example.vcsync.io", "version": "v1alpha1",
                    "service": {"namespace": "default", "name": "backend", "port": 443},
                    "insecureSkipTLSVerify": true,
                    "groupPriorityMinimum": 100, "versionPriority": 100}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let condition = |reason: &'static str| {
        let api_services = api_services.clone();
        async move {
            wait_for(WAIT, reason, || async {
                let a = api_services.get("v1alpha1.example.vcsync.io").await.ok()?;
                let c = a
                    .status?
                    .conditions?
                    .into_iter()
                    .find(|c| c.type_ == "Available")?;
                (c.status == "False" && c.reason.as_deref() == Some(reason))
                    .then(|| c.message.unwrap_or_default())
            })
            .await
        }
    };
    assert_eq!(
        condition("ServiceNotFound").await,
        "service/backend in \"default\" is not present"
    );
    Api::<Service>::namespaced(c.clone(), "default")
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "backend"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 8443}]}}))
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        condition("EndpointsNotFound").await,
        "cannot find endpoints for service/backend in \"default\""
    );
    let eps = Api::<Endpoints>::namespaced(c.clone(), "default");
    // This machine's own address (never dialed: the address is not ready).
    let own_ip = vcsync_e2e::harness::metrics_api_ip().to_string();
    eps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "backend"},
            "subsets": [{"notReadyAddresses": [{"ip": own_ip}], "ports": [{"name": "https", "port": 8443}]}]}))
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        condition("MissingEndpoints").await,
        "endpoints for service/backend in \"default\" have no addresses with port name \"https\""
    );

    // Unavailable: the proxy answers kube-aggregator's plain-text 503 without dialing.
    let req = http::Request::get("/apis/example.vcsync.io/v1alpha1/things")
        .body(Vec::new())
        .unwrap();
    match c.request_text(req).await {
        Err(kube::Error::Api(st)) => assert_eq!(st.code, 503, "{st:?}"),
        other => panic!("expected a 503: {other:?}"),
    }
    // Discovery lists the group (without resources) as kube-aggregator does for any APIService.
    let req = http::Request::get("/apis").body(Vec::new()).unwrap();
    let groups: Value = c.request(req).await.unwrap();
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "example.vcsync.io"),
        "{groups}"
    );
}
