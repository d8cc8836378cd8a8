//! vcsync: a virtual-cluster syncer.
//!
//! A tenant gets their own Kubernetes API server (the *virtual* API); vcsync
//! makes the workloads created there run in one namespace of a real *host*
//! cluster. It mirrors pods, services, endpoints, ingresses and network
//! policies, plus the config maps, secrets and service account tokens they
//! reference, down into the host namespace, and syncs status, events and
//! node information back up.
//! The host namespace is the security boundary: vcsync never writes outside
//! it and rewrites everything it mirrors so the tenant cannot escape it.
//!
//! Modules:
//! - [`config`]: the command line ([`config::Args`]) and the validated
//!   [`config::Config`] of `vcsync run`.
//! - [`names`]: validated Kubernetes names ([`names::DnsLabel`],
//!   [`names::DnsSubdomain`]).
//! - [`kube_clients`]: loading both kubeconfigs, building the clients and the
//!   start-up reachability check.
//! - [`kubeconfig`]: the tenant's kubeconfig for the virtual API (`vcsync
//!   kubeconfig`) and the host Secret that holds it.
//! - [`logging`]: the tracing subscriber (text or JSON).
//! - [`permissions`]: every host API request vcsync makes, which the Role in
//!   `manifests/` must grant exactly.
//! - [`metrics`]: the Prometheus metrics (controller-runtime names plus
//!   `vcsync_*`) and the API request counting client wrapper.
//! - [`health`]: the `/livez`, `/readyz` and `/metrics` endpoint.
//! - [`leader`]: Lease-based leader election in the host namespace.
//! - [`gate`]: the write gate that keeps the engine's writes to the time this replica
//!   holds the Lease, while its caches stay warm.
//! - [`guardrails`]: the start-up and periodic check that the host namespace
//!   has its Pod Security labels, ResourceQuota, LimitRange and default-deny
//!   NetworkPolicy (`--require-guardrails`).
//! - [`policy`]: the tenant's isolation policy (`--policy FILE`) and the pure
//!   checks every object passes before it is written to the host.
//! - [`kubelet`]: the kubelet API of the virtual nodes (`kubectl logs`,
//!   `exec`, `attach`, `port-forward`), relayed to the host pods' subresources.
//! - [`metrics_api`]: `metrics.k8s.io` for the virtual cluster (`kubectl top pods`),
//!   translated from the host namespace's pod metrics.
//! - [`run`]: the `vcsync run` command.
//! - [`translate`] and [`sync`]: the pure translation and the controllers.
//! - [`cache`]: the compact projections the controllers cache ([`cache::HostPod`]).
#![forbid(unsafe_code)]

pub mod cache;
pub mod config;
pub mod gate;
pub mod guardrails;
pub mod health;
pub mod kube_clients;
pub mod kubeconfig;
pub mod kubelet;
pub mod leader;
pub mod logging;
pub mod markers;
pub mod metrics;
pub mod metrics_api;
pub mod names;
pub mod permissions;
pub mod policy;
pub mod run;
pub mod service_cidr;
pub mod sync;
pub mod translate;
