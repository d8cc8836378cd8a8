//! Replays recorded kube-apiserver exchanges (`../shared/conformance/`) and compares answers.
//!
//! * [`recording`]: serde types of the transcript and its JSON path subset.
//! * [`matcher`]: the pure matching rules of the transcript's README (placeholders, lists keyed
//!   by name, extra fields as notes, …).
//! * [`normalise`]: the recorder's normalisation, applied to replayed answers (managedFields,
//!   discovery cut-down, watch streams and BOOKMARK filtering).
//! * [`replay`]: the runner that sends every step through a [`kube::Client`] and builds a
//!   [`ReplayReport`].

pub mod matcher;
pub mod normalise;
pub mod recording;
pub mod replay;

pub use recording::Recording;
pub use replay::{ReplayOptions, ReplayReport, StepResult, replay};
