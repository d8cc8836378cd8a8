//! Events about synced host objects, copied up as Events on their virtual objects.

use std::sync::Arc;

use super::{Shared, Stop};

/// Run the event back-sync until `stop`.
pub async fn run(_shared: Arc<Shared>, stop: Stop) {
    stop.signal().await;
}
