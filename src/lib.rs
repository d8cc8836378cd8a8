//! vcsync: a virtual-cluster syncer.
//!
//! A tenant gets their own Kubernetes API server (the *virtual* API); vcsync
//! makes the workloads created there run in one namespace of a real *host*
//! cluster. It mirrors pods, services, endpoints and ingresses, plus the
//! config maps, secrets and service account tokens they reference, down into
//! the host namespace, and syncs status, events and node information back up.
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
//! - [`logging`]: the tracing subscriber (text or JSON).
//! - [`run`]: the `vcsync run` command. The sync engine itself is not written
//!   yet; `run` stops after checking that both APIs answer.
#![forbid(unsafe_code)]

pub mod config;
pub mod kube_clients;
pub mod logging;
pub mod markers;
pub mod names;
pub mod run;
pub mod sync;
pub mod translate;
