//! The node loop: register the simulated nodes and keep their status Ready.

use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::api::{KUBELET, api_code, post_params, with_retries};
use super::{KubeletConfig, Shared, SimEvent, SimNode, status};

/// Registers the nodes, then refreshes their status every heartbeat interval.
pub(crate) async fn run_nodes(
    client: Client,
    cfg: Arc<KubeletConfig>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<Node> = Api::all(client);
    let since = Timestamp::now();
    let mut ready = vec![false; cfg.nodes.len()];
    let mut backoff = cfg.retry.initial;
    loop {
        for (i, node) in cfg.nodes.iter().enumerate() {
            let port = shared.kubelet_ports.get(i).copied().unwrap_or(10250);
            match heartbeat(&api, &cfg, i, port, since, !ready[i]).await {
                Ok(()) => {
                    shared.bump(|c| &c.node_heartbeats);
                    if !ready[i] {
                        ready[i] = true;
                        info!(node = %node.name, "node registered and ready");
                        shared.emit(SimEvent::NodeReady {
                            node: node.name.clone(),
                        });
                    }
                }
                Err(e) => {
                    warn!(node = %node.name, error = %e, "node heartbeat failed");
                    shared.bump(|c| &c.api_errors);
                    ready[i] = false;
                }
            }
        }
        let all_ready = ready.iter().all(|r| *r);
        shared.nodes_ready.send_if_modified(|r| {
            let changed = *r != all_ready;
            *r = all_ready;
            changed
        });
        let wait = if all_ready {
            backoff = cfg.retry.initial;
            cfg.heartbeat_interval
        } else {
            let w = backoff;
            backoff = (backoff * 2).min(cfg.retry.max);
            w
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// Creates the node if `ensure` (or if the status patch finds it gone), then patches status.
async fn heartbeat(
    api: &Api<Node>,
    cfg: &KubeletConfig,
    index: usize,
    kubelet_port: u16,
    since: Timestamp,
    ensure: bool,
) -> kube::Result<()> {
    let node = &cfg.nodes[index];
    let ip = cfg.node_ip(index);
    if ensure {
        ensure_node(api, cfg, node).await?;
    }
    let status = status::node_status(
        node,
        &ip,
        kubelet_port,
        &cfg.kubelet_version,
        since,
        Timestamp::now(),
    );
    let body = json!({ "status": status });
    let pp = PatchParams {
        field_manager: Some(KUBELET.to_owned()),
        ..Default::default()
    };
    let merge = Patch::Merge(&body);
    let patch = || api.patch_status(&node.name, &pp, &merge);
    match with_retries(cfg.retry, "patch node status", patch).await {
        Err(e) if api_code(&e) == Some(404) => {
            ensure_node(api, cfg, node).await?;
            with_retries(cfg.retry, "patch node status", patch)
                .await
                .map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

async fn ensure_node(api: &Api<Node>, cfg: &KubeletConfig, node: &SimNode) -> kube::Result<()> {
    let existing = with_retries(cfg.retry, "get node", || api.get_opt(&node.name)).await?;
    if existing.is_some() {
        return Ok(());
    }
    let object = status::node_object(node);
    let pp = post_params(KUBELET);
    match with_retries(cfg.retry, "create node", || api.create(&pp, &object)).await {
        Ok(_) => {
            debug!(node = %node.name, "created node");
            Ok(())
        }
        Err(e) if api_code(&e) == Some(409) => Ok(()),
        Err(e) => Err(e),
    }
}
