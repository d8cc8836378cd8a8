//! The tenant kubeconfig end to end: built from a real (test) virtual API
//! server's admin kubeconfig, written as a Secret into a (test) host API
//! server, read back, and used by a real `kube::Client` to reach the virtual
//! API. Also `vcsync kubeconfig`, which prints the same bytes.

use std::process::Command;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use vcsync::kubeconfig::{
    ROLE, ROLE_LABEL, SECRET_KEY, SecretError, SecretWrite, ServerUrl, TenantKubeconfigSource,
    build_from_files, ensure_kubeconfig_secret,
};
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};

const TENANT: &str = "tenant-a";
const HOST_NS: &str = "vc-tenant-a";
const SECRET: &str = "vcsync-kubeconfig";

async fn start() -> TestApiServer {
    TestApiServer::start(ServerConfig::default())
        .await
        .expect("test API server")
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
    )
    .await
    .expect("namespace");
}

async fn client_from(kubeconfig: &str) -> kube::Client {
    let kc = Kubeconfig::from_yaml(kubeconfig).expect("the Secret holds a kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    kube::Client::try_from(config).expect("a client")
}

fn source(virtual_server: &TestApiServer, server: &str) -> TenantKubeconfigSource {
    TenantKubeconfigSource {
        tenant: TENANT.into(),
        // The test server only listens on 127.0.0.1; in a cluster this is
        // https://vcsync-api.<namespace>.svc:443.
        server: server.parse::<ServerUrl>().unwrap(),
        virtual_kubeconfig: virtual_server.kubeconfig_path(),
        credentials: None,
    }
}

#[tokio::test]
async fn the_secret_holds_a_kubeconfig_that_reaches_the_virtual_api() {
    let virtual_server = start().await;
    let host_server = start().await;
    let host = host_server.client();
    create_namespace(&host, HOST_NS).await;
    create_namespace(&virtual_server.client(), "tenant-only").await;

    let kubeconfig = build_from_files(&source(&virtual_server, &virtual_server.url())).unwrap();
    let write = ensure_kubeconfig_secret(&host, HOST_NS, SECRET, TENANT, &kubeconfig)
        .await
        .unwrap();
    assert_eq!(write, SecretWrite::Created);

    // Read back as a tenant-side tool would, and use it.
    let secrets: Api<Secret> = Api::namespaced(host.clone(), HOST_NS);
    let secret = secrets.get(SECRET).await.unwrap();
    let labels = secret.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get(vcsync::markers::MANAGED_BY).map(String::as_str),
        Some(TENANT)
    );
    assert_eq!(labels.get(ROLE_LABEL).map(String::as_str), Some(ROLE));
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));
    let stored = String::from_utf8(secret.data.unwrap()[SECRET_KEY].0.clone()).unwrap();
    assert_eq!(stored, kubeconfig);
    let tenant_client = client_from(&stored).await;
    let namespaces: Api<Namespace> = Api::all(tenant_client);
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("the tenant kubeconfig reaches the virtual API")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert!(names.iter().any(|n| n == "tenant-only"), "{names:?}");
    assert!(
        !names.iter().any(|n| n == HOST_NS),
        "reached the host instead: {names:?}"
    );

    // Current: zero writes.
    let writes = host_server.write_count();
    for _ in 0..3 {
        let write = ensure_kubeconfig_secret(&host, HOST_NS, SECRET, TENANT, &kubeconfig)
            .await
            .unwrap();
        assert_eq!(write, SecretWrite::Unchanged);
    }
    assert_eq!(host_server.write_count(), writes, "no write when current");

    // An input changes (another server URL): one update, then quiet again.
    let moved = build_from_files(&source(
        &virtual_server,
        &format!("https://localhost:{}", virtual_server.port()),
    ))
    .unwrap();
    assert_ne!(moved, kubeconfig);
    let write = ensure_kubeconfig_secret(&host, HOST_NS, SECRET, TENANT, &moved)
        .await
        .unwrap();
    assert_eq!(write, SecretWrite::Updated);
    assert_eq!(host_server.write_count(), writes + 1);
    let stored = secrets.get(SECRET).await.unwrap().data.unwrap()[SECRET_KEY]
        .0
        .clone();
    assert_eq!(stored, moved.as_bytes());
    assert_eq!(
        ensure_kubeconfig_secret(&host, HOST_NS, SECRET, TENANT, &moved)
            .await
            .unwrap(),
        SecretWrite::Unchanged
    );

    // Someone edits the Secret: it is put back.
    let mut edited = secrets.get(SECRET).await.unwrap();
    edited
        .data
        .as_mut()
        .unwrap()
        .insert("extra".into(), k8s_openapi::ByteString(b"x".to_vec()));
    secrets
        .replace(SECRET, &PostParams::default(), &edited)
        .await
        .unwrap();
    assert_eq!(
        ensure_kubeconfig_secret(&host, HOST_NS, SECRET, TENANT, &moved)
            .await
            .unwrap(),
        SecretWrite::Updated
    );
    let data = secrets.get(SECRET).await.unwrap().data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), [SECRET_KEY]);
}

#[tokio::test]
async fn a_foreign_secret_of_that_name_is_never_overwritten() {
    let host_server = start().await;
    let host = host_server.client();
    create_namespace(&host, HOST_NS).await;
    let secrets: Api<Secret> = Api::namespaced(host.clone(), HOST_NS);
    for (name, labels) in [
        ("unlabelled", json!({})),
        (
            "other-tenant",
            json!({vcsync::markers::MANAGED_BY: "tenant-b"}),
        ),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": labels},
                    "stringData": {"kubeconfig": "theirs"}
                }))
                .unwrap(),
            )
            .await
            .unwrap();
        let err = ensure_kubeconfig_secret(&host, HOST_NS, name, TENANT, "ours")
            .await
            .unwrap_err();
        assert!(matches!(err, SecretError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("left untouched"), "{err}");
        let kept = secrets.get(name).await.unwrap().data.unwrap();
        assert_eq!(kept["kubeconfig"].0, b"theirs");
    }
}

#[tokio::test]
async fn host_refusals_are_reported_with_the_secret_name() {
    let host_server = start().await;
    let host = host_server.client();
    // The namespace does not exist: the create is refused.
    let err = ensure_kubeconfig_secret(&host, "missing-ns", SECRET, TENANT, "kc")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("creating host Secret missing-ns/vcsync-kubeconfig: 404"),
        "{msg}"
    );
}

#[tokio::test]
async fn vcsync_kubeconfig_prints_the_same_kubeconfig() {
    let virtual_server = start().await;
    let expected = build_from_files(&TenantKubeconfigSource {
        tenant: TENANT.into(),
        server: ServerUrl::in_cluster("vcsync-api", HOST_NS),
        virtual_kubeconfig: virtual_server.kubeconfig_path(),
        credentials: None,
    })
    .unwrap();
    // As in the pod: everything from the environment.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vcsync"));
    for (key, _) in std::env::vars() {
        if key.starts_with("VCSYNC_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .arg("kubeconfig")
        .env("VCSYNC_TENANT", TENANT)
        .env("VCSYNC_HOST_NAMESPACE", HOST_NS)
        .env(
            "VCSYNC_VIRTUAL_KUBECONFIG",
            virtual_server.kubeconfig_path(),
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);

    // A missing input is one line and exit code 1.
    let out = Command::new(env!("CARGO_BIN_EXE_vcsync"))
        .args([
            "kubeconfig",
            "--tenant",
            TENANT,
            "--host-namespace",
            HOST_NS,
            "--virtual-kubeconfig",
            "/nonexistent/admin.kubeconfig",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .starts_with("error: failed to load virtual kubeconfig /nonexistent/admin.kubeconfig"),
        "{stderr}"
    );
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}
