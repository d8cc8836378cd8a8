//! Patch application: JSON merge patch, JSON patch, strategic merge patch, server-side apply and
//! `metadata.managedFields` bookkeeping, as pure functions over `serde_json::Value`.
//!
//! - [`merge_patch`]: RFC 7386.
//! - [`json_patch`]: RFC 6902, with kube-apiserver's error shapes.
//! - [`strategic_merge_patch`]: list merge keys from the OpenAPI list types ([`schema`]).
//! - [`server_side_apply`] / [`track_update`]: field ownership in the FieldsV1 format.
//! - `decode_*`: turn request bodies into values with the exact `400` texts.

mod apply;
mod decode;
mod fieldpath;
mod json_patch;
mod managed_fields;
mod merge;
pub mod schema;
mod schema_table;
mod strategic;

pub use apply::{server_side_apply, validate_apply};
pub use decode::{decode_apply_body, decode_json_patch, decode_patch_body, go_json_error};
pub use json_patch::json_patch;
pub use managed_fields::{manager_from_request, track_update};
pub use merge::merge_patch;
pub use strategic::strategic_merge_patch;
