//! The write gate: the sync engine writes only while this replica holds the leader Lease.
//!
//! Losing the Lease (a host API outage longer than the renew deadline, or another replica
//! taking over) must stop every write at once, but need not stop the engine: its watch
//! caches stay valid while it stands by (they follow the APIs like any watch, and resume
//! from their last resourceVersion when an API comes back). So instead of tearing the engine
//! down and re-listing everything when the Lease comes back, [`crate::run`] keeps it
//! running and closes this gate:
//!
//! - The engine's clients are wrapped by [`WriteGate::client`]: while the gate is closed,
//!   every request that is not a read (`GET`/`HEAD`, which covers list and watch) fails at
//!   once with [`GateClosed`], before it leaves the process. This is the guarantee: nothing
//!   the engine does, in any controller, the garbage collectors, Event recording or the
//!   kubeconfig Secret, reaches an API while this replica does not lead. The Lease itself
//!   is written through the ungated client.
//! - Reconcilers wait for [`WriteGate::opened`] before they read their caches, so while
//!   standing by they queue instead of failing and backing off, and when the gate opens they
//!   decide from the caches as they are then: what is still in sync costs no write.
//!
//! The gate is closed the moment the elector gives up (the renew deadline is shorter than
//! the lease duration, so before any other replica may take over). A request already sent
//! when it closes cannot be recalled; it was sent while leading, as before.

use std::sync::Arc;

use kube::Client;
use tokio::sync::watch;

/// Whether the engine may write.
#[derive(Debug, Clone)]
pub struct WriteGate {
    open: Arc<watch::Sender<bool>>,
}

/// A write refused because this replica does not hold the leader Lease.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("not leading: writes are paused until this replica holds the leader lease again")]
pub struct GateClosed;

impl WriteGate {
    /// A gate that starts open (no leader election: this replica always writes).
    pub fn open() -> WriteGate {
        WriteGate {
            open: Arc::new(watch::channel(true).0),
        }
    }

    /// A gate that starts closed (leader election: open it once leading).
    pub fn closed() -> WriteGate {
        WriteGate {
            open: Arc::new(watch::channel(false).0),
        }
    }

    /// Lets writes through, or stops them.
    pub fn set(&self, open: bool) {
        self.open.send_replace(open);
    }

    /// Whether writes go through now.
    pub fn is_open(&self) -> bool {
        *self.open.borrow()
    }

    /// Resolves once the gate is open (at once when it is).
    pub async fn opened(&self) {
        let mut rx = self.open.subscribe();
        let _ = rx.wait_for(|open| *open).await;
    }

    /// `client` with every non-read request refused while the gate is closed.
    pub fn client(&self, client: Client) -> Client {
        let default_ns = client.default_namespace().to_owned();
        let gate = self.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let (client, gate) = (client.clone(), gate.clone());
            async move {
                let read = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
                if !read && !gate.is_open() {
                    return Err(Box::new(GateClosed) as tower::BoxError);
                }
                client.send(req).await.map_err(tower::BoxError::from)
            }
        });
        Client::new(service, default_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn opened_waits_for_the_gate() {
        let gate = WriteGate::closed();
        assert!(!gate.is_open());
        let waiter = tokio::spawn({
            let gate = gate.clone();
            async move { gate.opened().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        gate.set(true);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("opened resolves")
            .unwrap();
        // Already open: at once.
        gate.opened().await;
    }

    #[tokio::test]
    async fn a_closed_gate_refuses_writes_and_passes_reads() {
        use kube::api::{Api, PostParams};
        // A client whose every request would fail to connect: a read gets that far, a write
        // is refused by the gate before it.
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let inner = Client::try_from(config).unwrap();
        let gate = WriteGate::closed();
        let api: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(gate.client(inner), "a");
        let write = api
            .create(&PostParams::default(), &Default::default())
            .await
            .unwrap_err();
        assert!(write.to_string().contains("not leading"), "{write}");
        let read = api.get_opt("x").await.unwrap_err();
        assert!(!read.to_string().contains("not leading"), "{read}");
    }
}
