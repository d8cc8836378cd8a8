//! `sandbox`: the main job on an embedded default. Starts a host and a virtual test API server,
//! the kubelet simulator on the host and vcsync between them; writes `host.kubeconfig` and
//! `virtual.kubeconfig`; creates a sample workload in the virtual cluster; prints what the
//! host side made of it, and keeps running (re-printing on change) until ctrl-c.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::core::v1::{
    ConfigMap, Namespace, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;
use vcsync::markers;
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
use vcsync_e2e::kubelet::{Kubelet, KubeletConfig};

#[derive(Debug, Parser)]
#[command(about = "Run vcsync between two in-process test API servers with a sample workload")]
struct Args {
    /// Tenant name.
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Host namespace of the tenant.
    #[arg(long, default_value = "tenant-demo")]
    host_namespace: String,
    /// Where to write host.kubeconfig and virtual.kubeconfig.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Host API port (0: any free port).
    #[arg(long, default_value_t = 0)]
    host_port: u16,
    /// Virtual API port (0: any free port).
    #[arg(long, default_value_t = 0)]
    virtual_port: u16,
    /// Exit after printing the table once (for scripts and tests).
    #[arg(long)]
    once: bool,
}

fn obj<T: DeserializeOwned>(v: serde_json::Value) -> anyhow::Result<T> {
    Ok(serde_json::from_value(v)?)
}

async fn create<K>(api: &Api<K>, v: serde_json::Value) -> anyhow::Result<()>
where
    K: kube::Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    match api.create(&PostParams::default(), &obj::<K>(v)?).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rustls::crypto::ring::default_provider()
        .install_default()
        .map_err(|_| anyhow::anyhow!("a rustls crypto provider was already installed"))?;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,vcsync=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();

    let host = TestApiServer::start(ServerConfig {
        port: args.host_port,
        // The simulated nodes' Hostname addresses do not resolve.
        kubelet_preferred_address_types: vec!["InternalIP".into(), "Hostname".into()],
        ..ServerConfig::default()
    })
    .await?;
    let virt = TestApiServer::start(ServerConfig {
        port: args.virtual_port,
        // The tenant's metrics.k8s.io is vcsync's APIService, not a metrics-server of its own.
        resource_metrics: false,
        ..ServerConfig::default()
    })
    .await?;
    std::fs::create_dir_all(&args.dir)?;
    let host_kc = args.dir.join("host.kubeconfig");
    let virtual_kc = args.dir.join("virtual.kubeconfig");
    host.write_kubeconfig(&host_kc)?;
    virt.write_kubeconfig(&virtual_kc)?;
    let (hc, vc) = (host.client(), virt.client());

    // What the platform creates in the host namespace (see manifests/).
    let ns = &args.host_namespace;
    create(
        &Api::<Namespace>::all(hc.clone()),
        json!({"metadata": {"name": ns}}),
    )
    .await?;
    create(
        &Api::<ServiceAccount>::namespaced(hc.clone(), ns),
        json!({"metadata": {"name": "vcsync-workload"}, "automountServiceAccountToken": false}),
    )
    .await?;
    create(
        &Api::<Service>::namespaced(hc.clone(), ns),
        json!({"metadata": {"name": "vcsync-api"}, "spec": {"selector": {"app": "vcsync"}, "ports": [{"name": "https", "port": 443, "targetPort": 6443}]}}),
    )
    .await?;
    // The simulated host kubelets serve a kubelet API trusted by the host server, as k3s
    // agents' are by theirs.
    let kubelet = Kubelet::start(
        hc.clone(),
        KubeletConfig::default().namespace(ns.clone()).api_tls(
            vcsync_e2e::kubelet::KubeletApiTls {
                serving_ca_cert_pem: Some(host.ca_pem().to_owned()),
                serving_ca_key_pem: Some(host.ca_key_pem().to_owned()),
                client_ca_pem: Some(host.client_ca_pem().to_owned()),
            },
        ),
    )?;
    // A volume provisioner for the host's StorageClasses (the sample claim's).
    let _provisioner = vcsync_e2e::provisioner::start(
        hc.clone(),
        Some(ns.clone()),
        vcsync_e2e::harness::sim_classes(),
    )
    .await?;
    // vcsync's kubelet endpoint for the virtual nodes, with the virtual server's CAs laid out
    // as k3s keeps them (`kubectl logs/exec` against the virtual API reach the host pods).
    let tls = virt.write_k3s_tls_dir(&args.dir.join("virtual-tls"))?;
    let loopback: std::net::IpAddr = "127.0.0.1".parse()?;
    let kubelet_endpoint = vcsync::kubelet::bind(vcsync::kubelet::EndpointConfig {
        advertise: loopback,
        bind: std::net::SocketAddr::new(loopback, 0),
        client_ca: Some(tls.client_ca_crt.clone()),
        client_names: vec!["system:apiserver".into()],
        serving: vcsync::kubelet::ServingCert::SignedBy {
            ca_cert: tls.server_ca_crt.clone(),
            ca_key: tls.server_ca_key.clone(),
        },
    })
    .await?;
    // vcsync's metrics.k8s.io API, which the virtual API server's aggregator calls (with the
    // front-proxy certificate of its PKI) for `kubectl top`.
    // On the machine's own address, not loopback: vcsync registers it in the virtual cluster
    // (Service, Endpoints, APIService), and Endpoints may not point at loopback.
    let metrics_api_cfg = vcsync::metrics_api::config(
        vcsync_e2e::harness::metrics_api_ip(),
        0,
        Some(tls.request_header_ca_crt.clone()),
        vec!["system:auth-proxy".into()],
        vcsync::kubelet::ServingCert::SignedBy {
            ca_cert: tls.server_ca_crt.clone(),
            ca_key: tls.server_ca_key.clone(),
        },
    );
    let metrics_api = vcsync::metrics_api::bind(metrics_api_cfg.clone()).await?;
    let registration = vcsync::metrics_api::register::registration(
        &args.tenant,
        &metrics_api_cfg,
        metrics_api.local_addr().map_or(0, |a| a.port()),
    )?;
    let registration = tokio::spawn(vcsync::metrics_api::register::maintain(
        vc.clone(),
        vcsync::gate::WriteGate::open(),
        registration,
        futures::future::pending::<()>(),
    ));

    // vcsync between them.
    let engine_cfg = vcsync::sync::EngineConfig {
        tenant: args.tenant.clone(),
        host_namespace: ns.clone(),
        workload_service_account: "vcsync-workload".into(),
        concurrency: 8,
        api_service: "vcsync-api".into(),
        dns_service: ("kube-system".into(), "kube-dns".into()),
        cluster_domain: "cluster.local".into(),
        kubelet: Some(kubelet_endpoint.endpoint),
    };
    // The sample ingress needs a class and a host the policy allows, the sample claim a
    // StorageClass; the rest is the secure default (see the policy section of the README).
    let policy = vcsync::policy::Policy::from_yaml(&format!(
        "ingress:\n  class:\n    allowed: [nginx]\n    default: nginx\n  allowedHosts: [\"*.demo.example.com\"]\nstorage:\n  class:\n    default: {}\n",
        vcsync_e2e::harness::STORAGE_CLASSES[0]
    ))?;
    let shared =
        Arc::new(vcsync::sync::Shared::new(engine_cfg, hc.clone(), vc.clone()).with_policy(policy));
    let kubelet_api = tokio::spawn(kubelet_endpoint.serve(
        shared.clone(),
        hc.clone(),
        shared.metrics.clone(),
        futures::future::pending::<()>(),
    ));
    let metrics_api = tokio::spawn(metrics_api.serve(
        shared.clone(),
        hc.clone(),
        vc.clone(),
        shared.metrics.clone(),
        futures::future::pending::<()>(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let engine = tokio::spawn(vcsync::sync::run(shared, async move {
        let _ = stop_rx.await;
    }));

    sample_workload(&vc).await?;

    println!(
        "host API:    {}  (kubectl --kubeconfig {})",
        host.url(),
        host_kc.display()
    );
    println!(
        "virtual API: {}  (kubectl --kubeconfig {})",
        virt.url(),
        virtual_kc.display()
    );
    println!("tenant {} syncs into host namespace {}\n", args.tenant, ns);

    let mut last = String::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let done = args.once && settled(&vc).await && host_network_policy(&hc, ns, &args.tenant).await.is_some();
                let table = table(&vc, &hc, ns, &args.tenant).await.unwrap_or_else(|e| format!("(listing failed: {e})\n"));
                if table != last && (!args.once || done) {
                    println!("{table}");
                    if last.is_empty() || done {
                        show_workload_access(&virtual_kc).await;
                        show_network_policy(&hc, ns, &args.tenant).await;
                        show_pod_metrics(&virtual_kc).await;
                        show_metrics_registration(&vc).await;
                    }
                    last = table;
                }
                if done {
                    break;
                }
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    println!("stopping");
    let _ = stop_tx.send(());
    let _ = engine.await;
    kubelet_api.abort();
    metrics_api.abort();
    registration.abort();
    kubelet.stop().await?;
    drop((host, virt));
    Ok(())
}

/// `kubectl logs` and `kubectl exec` on the sample pod through the virtual API, as a tenant
/// would run them (they reach the host pod through vcsync's kubelet endpoint).
async fn show_workload_access(virtual_kc: &std::path::Path) {
    for args in [
        vec!["-n", "shop", "logs", "web", "--tail=3"],
        vec!["-n", "shop", "exec", "web", "--", "echo", "hello from exec"],
    ] {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(virtual_kc)
            .args(&args)
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", "false")
            .output()
            .await;
        println!("$ kubectl {}", args.join(" "));
        match out {
            Ok(o) => {
                print!("{}", String::from_utf8_lossy(&o.stdout));
                print!("{}", String::from_utf8_lossy(&o.stderr));
            }
            Err(e) => println!("(kubectl did not run: {e})"),
        }
    }
    println!();
}

/// The APIService vcsync registered for its metrics API (polled briefly: it is written by a
/// loop of its own).
async fn show_metrics_registration(vc: &kube::Client) {
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
    println!("$ kubectl get apiservice v1beta1.metrics.k8s.io   (registered by vcsync)");
    let api: kube::Api<APIService> = kube::Api::all(vc.clone());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let found = loop {
        match api.get_opt("v1beta1.metrics.k8s.io").await {
            Ok(Some(a)) => break Some(a),
            _ if tokio::time::Instant::now() > deadline => break None,
            _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
        }
    };
    let Some(a) = found else {
        println!("(not registered yet)\n");
        return;
    };
    let spec = a.spec.unwrap_or_default();
    let service = spec
        .service
        .map(|s| {
            format!(
                "{}/{}",
                s.namespace.unwrap_or_default(),
                s.name.unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "Local".into());
    println!("{:<24} {:<28} CA", "NAME", "SERVICE");
    println!(
        "{:<24} {:<28} {}\n",
        "v1beta1.metrics.k8s.io",
        service,
        if spec.ca_bundle.is_some() {
            "k3s server CA"
        } else {
            "none (insecureSkipTLSVerify)"
        }
    );
}

/// `kubectl top pods -n shop` against the virtual API, as the tenant runs it: the virtual
/// server's aggregator proxies it to vcsync's metrics API (the APIService vcsync registered).
/// Polled briefly: the aggregator needs a moment to find the backend available.
async fn show_pod_metrics(virtual_kc: &std::path::Path) {
    let args = ["top", "pods", "-n", "shop"];
    println!("$ kubectl {}", args.join(" "));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(virtual_kc)
            .args(args)
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() || tokio::time::Instant::now() >= deadline => {
                print!("{}", String::from_utf8_lossy(&o.stdout));
                print!("{}", String::from_utf8_lossy(&o.stderr));
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            Err(e) => {
                println!("(kubectl did not run: {e})");
                break;
            }
        }
    }
    println!();
}

/// A Deployment-less pod, a configmap it reads, a claim it mounts, a service, an ingress, a
/// NetworkPolicy, and the tenant DNS service ClusterFirst pods are pointed at.
async fn sample_workload(vc: &Client) -> anyhow::Result<()> {
    create(&Api::<Service>::namespaced(vc.clone(), "kube-system"), json!({"metadata": {"name": "kube-dns"}, "spec": {"selector": {"k8s-app": "kube-dns"}, "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}})).await?;
    create(
        &Api::<Namespace>::all(vc.clone()),
        json!({"metadata": {"name": "shop"}}),
    )
    .await?;
    // Pods need the namespace's default ServiceAccount (made by the controllers).
    let sas: Api<ServiceAccount> = Api::namespaced(vc.clone(), "shop");
    for _ in 0..200 {
        if sas.get_opt("default").await?.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    create(&Api::<ConfigMap>::namespaced(vc.clone(), "shop"), json!({"metadata": {"name": "web-config"}, "data": {"GREETING": "hello from the virtual cluster"}})).await?;
    // A claim without a class: the policy's default, provisioned on the host, Bound on both sides.
    create(
        &Api::<PersistentVolumeClaim>::namespaced(vc.clone(), "shop"),
        json!({"metadata": {"name": "web-data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await?;
    create(
        &Api::<Pod>::namespaced(vc.clone(), "shop"),
        json!({"metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
            "ports": [{"containerPort": 80}], "envFrom": [{"configMapRef": {"name": "web-config"}}],
            "volumeMounts": [{"name": "data", "mountPath": "/usr/share/nginx/html"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}}]}}),
    )
    .await?;
    create(&Api::<Service>::namespaced(vc.clone(), "shop"), json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})).await?;
    create(
        &Api::<Ingress>::namespaced(vc.clone(), "shop"),
        json!({"metadata": {"name": "web"}, "spec": {"rules": [{"host": "shop.demo.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
    )
    .await?;
    // Ingress to the web pod from the tenant's pods of every virtual namespace, on port 80.
    create(
        &Api::<NetworkPolicy>::namespaced(vc.clone(), "shop"),
        json!({"metadata": {"name": "web"}, "spec": {"podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress"], "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 80}]}]}}),
    )
    .await?;
    Ok(())
}

/// The host copy of the sample NetworkPolicy, if it is there yet.
async fn host_network_policy(hc: &Client, ns: &str, tenant: &str) -> Option<NetworkPolicy> {
    let name = vcsync::translate::host_name(
        tenant,
        "shop",
        "web",
        vcsync::translate::NameRule::Dns1123Subdomain,
    );
    Api::<NetworkPolicy>::namespaced(hc.clone(), ns)
        .get_opt(&name)
        .await
        .ok()
        .flatten()
}

/// The host copy of the sample NetworkPolicy: its selectors narrowed to the tenant.
async fn show_network_policy(hc: &Client, ns: &str, tenant: &str) {
    match host_network_policy(hc, ns, tenant).await {
        Some(p) => println!(
            "host copy of NetworkPolicy shop/web ({}), spec:\n  {}\n",
            p.name_any(),
            serde_json::to_string(&p.spec).unwrap_or_default()
        ),
        None => println!("NetworkPolicy shop/web: not on the host yet\n"),
    }
}

/// Whether the sample pod is Running and its claim Bound in the virtual API.
async fn settled(vc: &Client) -> bool {
    let pods: Api<Pod> = Api::namespaced(vc.clone(), "shop");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(vc.clone(), "shop");
    matches!(pods.get_opt("web").await, Ok(Some(p)) if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        && matches!(claims.get_opt("web-data").await, Ok(Some(c)) if c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound"))
}

/// Virtual objects and their host counterparts, found by the markers on the host side.
async fn table(vc: &Client, hc: &Client, ns: &str, tenant: &str) -> anyhow::Result<String> {
    let sel = ListParams::default().labels(&markers::tenant_selector(tenant));
    let mut host: BTreeMap<(String, String, String), (String, String)> = BTreeMap::new();
    macro_rules! collect_host {
        ($t:ty, $status:expr) => {
            for o in Api::<$t>::namespaced(hc.clone(), ns)
                .list(&sel)
                .await?
                .items
            {
                if let Some((kind, vns, vname, _)) = markers::source_of(&o.metadata, tenant) {
                    if kind == stringify!($t) {
                        host.insert(
                            (kind.to_string(), vns.to_string(), vname.to_string()),
                            (o.name_any(), $status(&o)),
                        );
                    }
                }
            }
        };
    }
    let pod_phase = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    let svc_ip = |s: &Service| {
        s.spec
            .as_ref()
            .and_then(|s| s.cluster_ip.clone())
            .unwrap_or_default()
    };
    collect_host!(Pod, pod_phase);
    collect_host!(Service, svc_ip);
    collect_host!(ConfigMap, |_: &ConfigMap| String::new());
    collect_host!(Secret, |_: &Secret| String::new());
    collect_host!(Ingress, |_: &Ingress| String::new());
    collect_host!(NetworkPolicy, |_: &NetworkPolicy| String::new());
    let claim_status = |c: &PersistentVolumeClaim| {
        let st = c.status.as_ref();
        format!(
            "{} {}",
            st.and_then(|s| s.phase.clone()).unwrap_or_default(),
            st.and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage"))
                .map(|q| q.0.clone())
                .unwrap_or_default()
        )
        .trim()
        .to_string()
    };
    collect_host!(PersistentVolumeClaim, claim_status);

    let mut rows = vec![(
        "KIND".to_string(),
        "VIRTUAL".to_string(),
        "VIRTUAL STATUS".to_string(),
        "HOST NAME".to_string(),
        "HOST STATUS".to_string(),
    )];
    let mut row = |kind: &str, o_ns: String, name: String, status: String| {
        let (hname, hstatus) = host
            .get(&(kind.to_string(), o_ns.clone(), name.clone()))
            .cloned()
            .unwrap_or_else(|| ("-".into(), String::new()));
        rows.push((
            kind.to_string(),
            format!("{o_ns}/{name}"),
            status,
            hname,
            hstatus,
        ));
    };
    let lp = ListParams::default();
    for p in Api::<Pod>::all(vc.clone()).list(&lp).await?.items {
        row(
            "Pod",
            p.namespace().unwrap_or_default(),
            p.name_any(),
            pod_phase(&p),
        );
    }
    for s in Api::<Service>::all(vc.clone()).list(&lp).await?.items {
        row(
            "Service",
            s.namespace().unwrap_or_default(),
            s.name_any(),
            svc_ip(&s),
        );
    }
    for c in Api::<ConfigMap>::all(vc.clone()).list(&lp).await?.items {
        let (cns, cname) = (c.namespace().unwrap_or_default(), c.name_any());
        // Only referenced configmaps are synced; list the ones that were.
        if host.contains_key(&("ConfigMap".to_string(), cns.clone(), cname.clone())) {
            row("ConfigMap", cns, cname, String::new());
        }
    }
    for c in Api::<PersistentVolumeClaim>::all(vc.clone())
        .list(&lp)
        .await?
        .items
    {
        let status = claim_status(&c);
        row(
            "PersistentVolumeClaim",
            c.namespace().unwrap_or_default(),
            c.name_any(),
            status,
        );
    }
    for i in Api::<Ingress>::all(vc.clone()).list(&lp).await?.items {
        row(
            "Ingress",
            i.namespace().unwrap_or_default(),
            i.name_any(),
            String::new(),
        );
    }
    for p in Api::<NetworkPolicy>::all(vc.clone()).list(&lp).await?.items {
        row(
            "NetworkPolicy",
            p.namespace().unwrap_or_default(),
            p.name_any(),
            String::new(),
        );
    }
    let w = |f: fn(&(String, String, String, String, String)) -> &String| {
        rows.iter().map(|r| f(r).len()).max().unwrap_or(0)
    };
    let (w0, w1, w2, w3) = (w(|r| &r.0), w(|r| &r.1), w(|r| &r.2), w(|r| &r.3));
    let mut out = String::new();
    for r in &rows {
        out.push_str(&format!(
            "{:w0$}  {:w1$}  {:w2$}  {:w3$}  {}\n",
            r.0, r.1, r.2, r.3, r.4
        ));
    }
    Ok(out)
}
