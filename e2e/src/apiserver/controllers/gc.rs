//! The garbage collector: ownerReference classification (solid / dangling / waiting for a
//! foreground owner), dependent deletion, orphaning, and removal of the `orphan` and
//! `foregroundDeletion` finalizers.

use serde_json::Value;

use super::Key;
use crate::apiserver::ops::{DeleteOpts, State, WriteCtx};
use crate::apiserver::resources::{self, ResourceDef};

/// How an owner reference stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerState {
    /// The owner exists (or its kind is unknown: never collect on a guess).
    Solid,
    /// The owner is gone (or was replaced: different uid).
    Dangling,
    /// The owner is being deleted in the foreground and waits for its dependents.
    Waiting,
}

/// The resource, namespace and name an owner reference points at.
pub fn resolve(r: &Value, dep_ns: &str) -> Option<(&'static ResourceDef, String, String)> {
    let api_version = r["apiVersion"].as_str()?;
    let group = api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    let def = resources::find_kind(group, r["kind"].as_str()?)?;
    let ns = if def.namespaced {
        dep_ns.to_string()
    } else {
        String::new()
    };
    Some((def, ns, r["name"].as_str()?.to_string()))
}

pub fn has_finalizer(obj: &Value, f: &str) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x == f))
}

pub fn deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

pub fn owner_state(st: &State, r: &Value, dep_ns: &str) -> OwnerState {
    let Some((def, ns, name)) = resolve(r, dep_ns) else {
        return OwnerState::Solid;
    };
    match st.store.get(def.storage, &ns, &name) {
        None => OwnerState::Dangling,
        Some(o) if o["metadata"]["uid"] != r["uid"] => OwnerState::Dangling,
        Some(o) if deleting(&o) && has_finalizer(&o, "foregroundDeletion") => OwnerState::Waiting,
        Some(_) => OwnerState::Solid,
    }
}

pub fn def_of(storage: &str) -> Option<&'static ResourceDef> {
    resources::RESOURCES.iter().find(|d| d.storage == storage)
}

fn ctx() -> WriteCtx {
    WriteCtx::system("generic-garbage-collector")
}

/// `attemptToDeleteItem` for one dependent. `has_dependents`: whether it owns something.
pub fn attempt_to_delete(st: &mut State, key: &Key, has_dependents: bool) {
    let (storage, ns, name) = key;
    let Some(def) = def_of(storage) else { return };
    let Some(obj) = st.store.get(storage, ns, name) else {
        return;
    };
    if deleting(&obj) {
        return;
    }
    let refs: Vec<Value> = obj["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if refs.is_empty() {
        return;
    }
    let mut solid = 0;
    let mut dangling_or_waiting: Vec<String> = Vec::new();
    let mut waiting = 0;
    for r in &refs {
        match owner_state(st, r, ns) {
            OwnerState::Solid => solid += 1,
            OwnerState::Dangling => {
                dangling_or_waiting.push(r["uid"].as_str().unwrap_or("").to_string())
            }
            OwnerState::Waiting => {
                waiting += 1;
                dangling_or_waiting.push(r["uid"].as_str().unwrap_or("").to_string());
            }
        }
    }
    if solid > 0 {
        if dangling_or_waiting.is_empty() {
            return;
        }
        strip_refs(st, def, ns, name, &|r: &Value| {
            dangling_or_waiting.iter().any(|u| r["uid"] == u.as_str())
        });
        return;
    }
    let policy = if waiting > 0 && has_dependents {
        "Foreground"
    } else if has_finalizer(&obj, "orphan") {
        "Orphan"
    } else if has_finalizer(&obj, "foregroundDeletion") {
        "Foreground"
    } else {
        "Background"
    };
    let opts = DeleteOpts {
        propagation: Some(policy.to_string()),
        precondition_uid: obj["metadata"]["uid"].as_str().map(str::to_string),
        ..DeleteOpts::default()
    };
    let _ = st.delete(def, ns, name, &opts, &ctx());
}

/// Remove the owner references matching `drop` from an object.
pub fn strip_refs(
    st: &mut State,
    def: &'static ResourceDef,
    ns: &str,
    name: &str,
    drop: &dyn Fn(&Value) -> bool,
) {
    let Some(old) = st.store.get(def.storage, ns, name) else {
        return;
    };
    let refs: Vec<Value> = old["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let kept: Vec<Value> = refs.iter().filter(|r| !drop(r)).cloned().collect();
    if kept.len() == refs.len() {
        return;
    }
    let mut new = (*old).clone();
    if let Some(m) = new["metadata"].as_object_mut() {
        if kept.is_empty() {
            m.remove("ownerReferences");
        } else {
            m.insert("ownerReferences".into(), Value::Array(kept));
        }
    }
    if let Err(e) = st.update_from(def, ns, name, &old, new, None, &ctx()) {
        tracing::debug!(
            "garbage collector: strip ownerReferences of {ns}/{name}: {}",
            e.body["message"]
        );
    }
}

/// Remove finalizer `f` from an object (finishing its deletion when it was the last).
pub fn remove_finalizer(st: &mut State, key: &Key, f: &str) {
    let (storage, ns, name) = key;
    let Some(def) = def_of(storage) else { return };
    let Some(old) = st.store.get(storage, ns, name) else {
        return;
    };
    if !has_finalizer(&old, f) {
        return;
    }
    let mut new = (*old).clone();
    let kept: Vec<Value> = old["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| *x != f)
        .cloned()
        .collect();
    if let Some(m) = new["metadata"].as_object_mut() {
        if kept.is_empty() {
            m.remove("finalizers");
        } else {
            m.insert("finalizers".into(), Value::Array(kept));
        }
    }
    if let Err(e) = st.update_from(def, ns, name, &old, new, None, &ctx()) {
        tracing::debug!(
            "garbage collector: remove finalizer {f} of {ns}/{name}: {}",
            e.body["message"]
        );
    }
}
