//! Adapter between the verbs and [`super::patch`]: the one place that names the patch and
//! field-management functions the handlers use.

pub use super::patch::{
    decode_apply_body, decode_json_patch, decode_patch_body, json_patch, manager_from_request,
    merge_patch, server_side_apply, strategic_merge_patch, track_update, validate_apply,
};
