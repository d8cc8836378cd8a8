//! Test fixtures for vcsync.
//!
//! * [`apiserver`]: an in-memory, in-process Kubernetes API server that behaves like
//!   kube-apiserver for everything vcsync and its tests use. It is a **test fixture**, never a
//!   code path of the product.
//! * [`kubelet`]: a kubelet + scheduler simulator that works against any API server.
//! * [`provisioner`]: a volume provisioner simulator (provisioning, binding, expansion,
//!   reclaim) that works against any API server.
//! * [`conformance`]: replays recorded exchanges with a real kube-apiserver and compares.
#![forbid(unsafe_code)]

pub mod apiserver;
pub mod conformance;
pub mod harness;
pub mod kubelet;
pub mod provisioner;
pub mod testutil;
