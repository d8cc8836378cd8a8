//! The in-process Kubernetes API server (a **test fixture**, never a code path of the product).
//!
//! It serves the Kubernetes REST API over HTTPS from memory and behaves like kube-apiserver
//! v1.32 for everything vcsync and its tests use. Layout:
//!
//! * [`resources`]: the table of served resources (drives routing and discovery).
//! * [`store`]: objects, the global resourceVersion and the event history.
//! * [`http`]: request parsing, authentication, content negotiation and verb dispatch.
//! * [`ops`]: the verbs (create/get/list/update/patch/delete/deletecollection) on the state.
//! * [`watch`]: watch streams replayed from the store history.
//! * [`admission`]: defaulting and admission plugins (ServiceAccount, LimitRanger, quota, IP allocation...).
//! * [`controllers`]: what kube-controller-manager does around the store (namespace lifecycle,
//!   garbage collection, default ServiceAccounts, root CA configmaps, quota status, node taints).
//! * [`validation`], [`patch`], [`selectors`], [`discovery`], [`table`]: pure helpers.
//! * [`resource_metrics`]: metrics-server's `PodMetrics` and SubjectAccessReviews (for the
//!   metrics API of vcsync).
//! * [`aggregator`]: API aggregation (kube-aggregator): APIServices that name a Service are
//!   proxied to it with the front-proxy client certificate, their `Available` condition kept,
//!   their discovery merged into `/apis`.
//! * [`faults`]: fault injection and request counters for reliability tests.
//! * [`pod_streams`], [`kubelet_client`]: `pods/log`, `exec`, `attach`, `portforward` proxied
//!   to kubelets over HTTPS with the API server's kubelet-client certificate (see [`tls`]).

pub mod admission;
pub mod aggregator;
pub mod controllers;
pub mod convert;
pub mod decode;
pub mod discovery;
pub mod errors;
pub mod faults;
pub mod http;
pub mod kubelet_client;
pub mod openapi;
pub mod ops;
pub mod patch;
pub mod patchops;
pub mod pod_streams;
pub mod protobuf;
pub mod resource_metrics;
pub mod resources;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod tls;
pub mod validation;
pub mod watch;

pub use faults::{Fault, FaultRule, RequestCount};
pub use server::{ServerConfig, TestApiServer};
pub use tls::{K3sTlsPaths, TlsMaterial};
