//! Compact projections of the objects vcsync caches in large numbers.
//!
//! The reflector caches hold one object per synced pod on each side; what they hold is what
//! vcsync's memory per pod is made of. Where the syncs read only part of an object, the cache
//! holds a projection: a type deserialized straight from the API's JSON with only those fields,
//! and still a kube `Resource` of the same kind, so watchers, reflectors and `Api` work on it.
//! A projection either drops what is never read ([`HostPod`]) or keeps it as JSON text, decoded
//! when needed ([`VirtualPod`]).

pub mod host_pod;
pub mod virtual_pod;

pub use host_pod::{ContainerImage, HostPod, HostPodSpec};
pub use virtual_pod::{DecodeError, VirtualPod};
