//! `apiserver-bench`: shows the test API server is not the bottleneck of vcsync's tests and
//! benchmarks: create throughput with concurrent clients, and a watch that receives 10,000
//! objects. A benchmark, not a test: it prints figures and asserts nothing.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use vcsync_e2e::apiserver::{ServerConfig, TestApiServer};
use vcsync_e2e::testutil::create_namespace;

#[derive(Debug, Parser)]
#[command(about = "Throughput of the test API server")]
struct Args {
    /// Objects to create.
    #[arg(long, default_value_t = 10_000)]
    objects: usize,
    /// Concurrent clients creating them.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = TestApiServer::start(ServerConfig {
        history_window: args.objects * 2 + 100,
        ..ServerConfig::default()
    })
    .await?;
    let client = server.client();
    create_namespace(&client, "bench").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let start_rv = cms
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();

    // A watch from before the creates must deliver every ADDED event.
    let watch_api = cms.clone();
    let expected = args.objects;
    let watcher = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut stream = watch_api
            .watch(&WatchParams::default().timeout(290), &start_rv)
            .await?
            .boxed();
        let mut n = 0usize;
        while let Some(ev) = stream.try_next().await? {
            if let WatchEvent::Added(_) = ev {
                n += 1;
                if n == expected {
                    break;
                }
            }
        }
        anyhow::Ok((n, t0.elapsed()))
    });

    let t0 = Instant::now();
    let per = args.objects.div_ceil(args.concurrency);
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let cms = cms.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per {
                let idx = w * per + i;
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("cm-{idx}"), "labels": {"bench": "yes"}},
                    "data": {"payload": "x".repeat(200)}
                }))?;
                cms.create(&PostParams::default(), &cm).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let create_secs = t0.elapsed().as_secs_f64();
    let created = per * args.concurrency;
    let (watched, watch_time) = tokio::time::timeout(Duration::from_secs(300), watcher).await???;

    let t1 = Instant::now();
    let listed = cms.list(&ListParams::default()).await?.items.len();
    let list_secs = t1.elapsed().as_secs_f64();

    println!(
        "creates: {created} in {create_secs:.2}s = {:.0}/s with {} clients",
        created as f64 / create_secs,
        args.concurrency
    );
    println!(
        "watch: {watched} ADDED events received in {:.2}s",
        watch_time.as_secs_f64()
    );
    println!("list: {listed} objects in {list_secs:.3}s");
    Ok(())
}
