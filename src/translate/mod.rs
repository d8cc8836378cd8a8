//! Pure translation of virtual objects into host objects (no client, no async): k8s-openapi
//! types in, host objects out. One file per synced kind.

pub mod name;

pub use name::{NameRule, host_name};
