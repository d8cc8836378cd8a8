//! Tenant NetworkPolicies, synced down so the host's CNI enforces them.
//!
//! The generic controller of [`super::kinds`] does the work; this kind adds two things. Its
//! translation reads the virtual Namespaces (a `namespaceSelector` is resolved against their
//! labels, [`crate::translate::networkpolicy`]), so the controller waits for that cache and
//! every policy whose meaning depends on namespace labels is reconciled again when a namespace
//! changes. And the policy file can turn the sync off (`networkPolicies.sync: false`): then
//! host copies are removed and nothing is written.

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use super::kinds::{SyncKind, run_kind};
use super::{Shared, Stop, SyncError, drain};
use crate::metrics::ApiLabel;
use crate::translate::networkpolicy::{self as np, NamespaceLabels};
use crate::translate::{Context, NameRule, TranslateError, merge_owned_meta};

/// The virtual namespaces' labels as the namespace cache holds them now.
fn namespaces(shared: &Shared) -> NamespaceLabels {
    shared
        .virtual_namespaces
        .state()
        .iter()
        .map(|ns| np::namespace_labels(ns))
        .collect()
}

impl SyncKind for NetworkPolicy {
    const KIND: &'static str = "NetworkPolicy";
    const RULE: NameRule = NameRule::Dns1123Subdomain;
    const NARROWED_RULE: &'static str = "networkpolicy.narrowed";

    fn check(
        policy: &crate::policy::Policy,
        v: &Self,
    ) -> Result<Self, Vec<crate::policy::Violation>> {
        crate::policy::check_network_policy(policy, v)
    }

    fn narrowed(v: &Self, allowed: &Self) -> Vec<String> {
        crate::policy::networkpolicy::narrowings(v, allowed)
    }

    /// Without the namespaces: every `namespaceSelector` that names labels matches nothing
    /// (never more than the tenant meant). The engine uses [`SyncKind::translate_in`].
    fn translate(ctx: &Context, v: &Self) -> Result<Self, Vec<TranslateError>> {
        np::host_network_policy(ctx, v, &NamespaceLabels::new())
    }

    fn translate_in(shared: &Shared, v: &Self) -> Result<Self, Vec<TranslateError>> {
        np::host_network_policy(&shared.ctx, v, &namespaces(shared))
    }

    fn merge(actual: &Self, desired: &Self) -> Option<Self> {
        let mut out = actual.clone();
        merge_owned_meta(&mut out.metadata, &desired.metadata);
        out.spec = desired.spec.clone();
        (out != *actual).then_some(out)
    }

    fn wanted(shared: &Shared, _v: &Self) -> impl Future<Output = Result<bool, SyncError>> + Send {
        let on = shared.policy().network_policies.sync;
        let namespaces = shared.virtual_namespaces.clone();
        async move {
            if !on {
                return Ok(false);
            }
            // Translating before the namespaces are listed would write selectors that match
            // too little and then correct them: a write on every restart.
            if !super::cache_ready(&namespaces).await {
                return Err(SyncError::Waiting {
                    cause: super::waits::WaitCause::Cache,
                    what: "the virtual Namespace cache".into(),
                });
            }
            Ok(true)
        }
    }
}

/// Run the NetworkPolicy controller and the namespace watch it reads until `stop`.
pub async fn run(shared: Arc<Shared>, stop: Stop) {
    let (policies, policies_stream) = shared.metrics.cached_stream(
        ApiLabel::Virtual,
        "NetworkPolicy",
        Api::<NetworkPolicy>::all(shared.virt.clone()),
        watcher::Config::default(),
    );
    let namespaces_stream = shared.metrics.cached_stream_into(
        ApiLabel::Virtual,
        "Namespace",
        Api::<Namespace>::all(shared.virt.clone()),
        watcher::Config::default(),
        shared.take_virtual_namespaces_writer(),
    );
    // A namespace's labels changed (or it came or went): translate again every policy whose
    // namespaceSelector may now match differently.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let index = policies.clone();
    let namespaces_stream = namespaces_stream.map(move |r| {
        if r.is_ok() {
            for p in index.state() {
                if np::depends_on_namespaces(&p) {
                    let _ = tx.send(ObjectRef::from_obj(p.as_ref()));
                }
            }
        }
        r
    });
    let watch_namespaces = async {
        tokio::select! {
            _ = drain("Namespace", namespaces_stream) => {}
            _ = stop.signal() => {}
        }
    };
    futures::join!(
        run_kind::<NetworkPolicy, _>(
            shared.clone(),
            stop.clone(),
            policies,
            policies_stream,
            Some(rx),
            false
        ),
        watch_namespaces,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_replaces_the_spec_and_is_quiet_when_in_sync() {
        let d: NetworkPolicy = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"podSelector": {"matchLabels": {"a": "b"}}, "policyTypes": ["Ingress"]}}),
        )
        .unwrap();
        assert_eq!(NetworkPolicy::merge(&d, &d), None);
        let a: NetworkPolicy = serde_json::from_value(
            json!({"metadata": {"name": "p"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        )
        .unwrap();
        assert_eq!(NetworkPolicy::merge(&a, &d).unwrap().spec, d.spec);
    }
}
