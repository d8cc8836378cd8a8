//! Virtual Nodes for the host nodes that run this tenant's pods.

use std::sync::Arc;

use super::{Shared, Stop};

/// Run the node back-sync until `stop`.
pub async fn run(_shared: Arc<Shared>, stop: Stop) {
    stop.signal().await;
}
