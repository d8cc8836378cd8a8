//! Services, endpoints, ingresses, and the configmaps and secrets that pods and ingresses
//! reference: one generic downward controller, specialised per kind.

use std::sync::Arc;

use super::{Shared, Stop};

/// Run the controllers of every non-pod kind until `stop`.
pub async fn run(_shared: Arc<Shared>, stop: Stop) {
    stop.signal().await;
}
