//! The verbs on the server state: create, get, list, update, delete, deletecollection, and
//! the metadata bookkeeping kube-apiserver's generic registry does around them (uid, times,
//! resourceVersion, generation, finalizers, graceful deletion, no-op detection).
//!
//! Everything here runs under the state lock and knows nothing about HTTP.

use std::sync::Arc;

use rand::Rng;
use serde_json::{Map, Value, json};

use super::admission::{self, Allocators};
use super::errors::ApiError;
use super::patchops as patch;
use super::resources::{self, ResourceDef};
use super::server::{ServerConfig, Shared};
use super::store::Store;
use super::tls::TlsMaterial;
use super::validation;

/// Everything behind the lock.
#[derive(Debug)]
pub struct State {
    pub store: Store,
    pub alloc: Allocators,
    /// PEM of the CA (published as `kube-root-ca.crt`).
    pub ca_pem: String,
}

impl State {
    pub fn new(config: &ServerConfig, tls: &TlsMaterial) -> State {
        State {
            store: Store::new(config.history_window),
            alloc: Allocators::new(config),
            ca_pem: tls.ca_pem.clone(),
        }
    }
}

/// Per-request write options.
#[derive(Debug, Clone, Default)]
pub struct WriteCtx {
    /// Field manager of this write (from `fieldManager` or the User-Agent).
    pub manager: String,
    pub dry_run: bool,
    /// A server-side apply: the apply already computed managedFields.
    pub apply: bool,
}

impl WriteCtx {
    pub fn system(manager: &str) -> WriteCtx {
        WriteCtx {
            manager: manager.to_string(),
            dry_run: false,
            apply: false,
        }
    }
}

/// `DeleteOptions` as far as we honour them.
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub grace_period_seconds: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

/// Server time, RFC 3339 with second precision, as Kubernetes serialises `metav1.Time`.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// Timestamp `secs` from now.
pub fn rfc3339_in(secs: i64) -> String {
    let t = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `generateName` suffix: 5 characters of the alphabet apimachinery uses (no vowels).
pub fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Kinds whose objects carry `metadata.generation` in 1.32.
fn has_generation(def: &ResourceDef) -> bool {
    matches!(
        def.plural,
        "ingresses" | "networkpolicies" | "priorityclasses" | "ingressclasses" | "endpointslices"
    )
}

/// Kinds whose DELETE answers the object rather than a `Status`.
fn delete_returns_object(def: &ResourceDef) -> bool {
    matches!(def.plural, "pods" | "services" | "namespaces")
}

/// Kinds that a PUT of a missing object creates.
fn allow_create_on_update(def: &ResourceDef) -> bool {
    matches!(
        def.plural,
        "endpoints" | "events" | "leases" | "limitranges" | "services"
    )
}

pub fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj["metadata"][field].as_str().unwrap_or("")
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// Remove `resourceVersion` and `managedFields` for equality checks (no-op detection).
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o["metadata"].as_object_mut() {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

/// Result of a delete.
#[derive(Debug)]
pub enum Deleted {
    /// Removed; the last state.
    Gone(Arc<Value>),
    /// Still there (finalizers or graceful pod deletion); the current state.
    Pending(Arc<Value>),
}

impl State {
    /// Namespace must exist for namespaced creates; a terminating one refuses new content.
    fn check_namespace_for_create(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let Some(nsobj) = self.store.get("namespaces", "", ns) else {
            return Err(ApiError::not_found("", "namespaces", ns));
        };
        let terminating = nsobj["status"]["phase"] == "Terminating"
            || !nsobj["metadata"]["deletionTimestamp"].is_null();
        if terminating {
            let mut details = ApiError::details(def.group, def.plural, name);
            details["causes"] = json!([{
                "reason": "NamespaceTerminating",
                "message": format!("namespace {ns} is being terminated"),
                "field": "metadata.namespace"
            }]);
            let qualified = if def.group.is_empty() {
                def.plural.to_string()
            } else {
                format!("{}.{}", def.plural, def.group)
            };
            return Err(ApiError::forbidden(
                format!(
                    "{qualified} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated"
                ),
                Some(details),
            ));
        }
        Ok(())
    }

    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.store
            .get(def.storage, ns, name)
            .ok_or_else(|| ApiError::not_found(def.group, def.plural, name))
    }

    /// Create `obj` (already decoded, kind-checked, namespace-checked). Returns the stored object.
    pub fn create(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        mut obj: Value,
        ctx: &WriteCtx,
    ) -> Result<Arc<Value>, ApiError> {
        {
            let m = meta_mut(&mut obj);
            // Fields clients may not set on create.
            for f in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "selfLink",
            ] {
                m.remove(f);
            }
            if def.namespaced {
                m.insert("namespace".into(), json!(ns));
            } else {
                m.remove("namespace");
            }
            let name = m.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty()
                && let Some(prefix) = m
                    .get("generateName")
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
            {
                let generated = format!("{prefix}{}", random_suffix());
                m.insert("name".into(), json!(generated));
            }
        }
        let name = meta_str(&obj, "name").to_string();
        if def.namespaced && !name.is_empty() {
            self.check_namespace_for_create(def, ns, &name)?;
        }
        admission::admit_create(self, def, ns, &mut obj, ctx)?;
        let errs = validation::validate(def.group, def.kind, validation::Op::Create, &obj);
        if !errs.is_empty() {
            return Err(validation::invalid_error(def.group, def.kind, &name, &errs));
        }
        if self.store.get(def.storage, ns, &name).is_some() {
            return Err(ApiError::already_exists(def.group, def.plural, &name));
        }
        admission::admit_create_checked(self, def, ns, &mut obj, ctx)?;
        {
            let m = meta_mut(&mut obj);
            m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
            m.insert("creationTimestamp".into(), json!(now_rfc3339()));
            if has_generation(def) {
                m.insert("generation".into(), json!(1));
            }
        }
        let now = now_rfc3339();
        if !ctx.apply {
            patch::track_update(None, &mut obj, &ctx.manager, &def.api_version(), None, &now);
        }
        if ctx.dry_run {
            return Ok(Arc::new(obj));
        }
        let rv = self.store.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        admission::after_create(self, def, ns, &obj);
        Ok(self.store.put(def.storage, ns, &name, obj, rv))
    }

    /// Update (PUT) through the main resource or a subresource (`status`). Returns the stored
    /// object and whether it was created (create-on-update kinds).
    pub fn update(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        name: &str,
        mut obj: Value,
        subresource: Option<&str>,
        ctx: &WriteCtx,
    ) -> Result<(Arc<Value>, bool), ApiError> {
        let body_name = meta_str(&obj, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let Some(old) = self.store.get(def.storage, ns, name) else {
            if subresource.is_none() && allow_create_on_update(def) {
                meta_mut(&mut obj).insert("name".into(), json!(name));
                return self.create(def, ns, obj, ctx).map(|o| (o, true));
            }
            return Err(ApiError::not_found(def.group, def.plural, name));
        };
        let body_rv = meta_str(&obj, "resourceVersion");
        if !body_rv.is_empty() && body_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(def.group, def.plural, name));
        }
        let body_uid = meta_str(&obj, "uid");
        if !body_uid.is_empty() && body_uid != meta_str(&old, "uid") {
            let key = if def.namespaced {
                format!("/registry/{}/{ns}/{name}", def.plural)
            } else {
                format!("/registry/{}/{name}", def.plural)
            };
            return Err(ApiError::conflict(
                def.group,
                def.plural,
                name,
                &format!(
                    "StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {body_uid}, UID in object meta: {}",
                    meta_str(&old, "uid")
                ),
            ));
        }
        self.update_from(def, ns, name, &old, obj, subresource, ctx)
            .map(|o| (o, false))
    }

    /// The common tail of update and patch: carry over what the client may not change, admit,
    /// validate, detect no-ops, store, and finalize if the last finalizer went.
    #[allow(clippy::too_many_arguments)]
    pub fn update_from(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        name: &str,
        old: &Arc<Value>,
        mut obj: Value,
        subresource: Option<&str>,
        ctx: &WriteCtx,
    ) -> Result<Arc<Value>, ApiError> {
        // Immutable metadata comes from the stored object.
        {
            let om = old["metadata"].as_object().cloned().unwrap_or_default();
            let m = meta_mut(&mut obj);
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match om.get(f) {
                    Some(v) => {
                        m.insert(f.into(), v.clone());
                    }
                    None => {
                        m.remove(f);
                    }
                }
            }
            if !m.contains_key("managedFields")
                && let Some(mf) = om.get("managedFields")
            {
                m.insert("managedFields".into(), mf.clone());
            }
        }
        match subresource {
            Some("status") => {
                // Status writes change status only (pods also take labels from the body).
                let mut merged = (**old).clone();
                let new_status = obj.get("status").cloned();
                match new_status {
                    Some(s) => {
                        merged["status"] = s;
                    }
                    None => {
                        if let Some(m) = merged.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
                if def.plural == "pods"
                    && let Some(labels) = obj["metadata"].get("labels")
                {
                    meta_mut(&mut merged).insert("labels".into(), labels.clone());
                }
                let mf = obj["metadata"].get("managedFields").cloned();
                if let Some(mf) = mf {
                    meta_mut(&mut merged).insert("managedFields".into(), mf);
                }
                obj = merged;
                admission::admit_status_update(def, old, &mut obj);
                let errs = validation::validate_status(def.group, def.kind, old, &obj);
                if !errs.is_empty() {
                    return Err(validation::invalid_error(def.group, def.kind, name, &errs));
                }
            }
            Some("finalize") => {
                // namespaces/finalize changes spec.finalizers only.
                let mut merged = (**old).clone();
                merged["spec"]["finalizers"] = obj["spec"]["finalizers"].clone();
                if let Some(mf) = obj["metadata"].get("managedFields").cloned() {
                    meta_mut(&mut merged).insert("managedFields".into(), mf);
                }
                obj = merged;
            }
            Some(_) => return Err(ApiError::internal("unsupported subresource update")),
            None => {
                if def.has_status() {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            if let Some(m) = obj.as_object_mut() {
                                m.remove("status");
                            }
                        }
                    }
                }
                admission::admit_update(self, def, ns, old, &mut obj, ctx)?;
                let errs =
                    validation::validate(def.group, def.kind, validation::Op::Update { old }, &obj);
                if !errs.is_empty() {
                    return Err(validation::invalid_error(def.group, def.kind, name, &errs));
                }
            }
        }
        if has_generation(def) {
            let spec_changed = {
                let strip = |v: &Value| {
                    let mut v = v.clone();
                    if let Some(m) = v.as_object_mut() {
                        m.remove("metadata");
                        m.remove("status");
                    }
                    v
                };
                strip(old) != strip(&obj)
            };
            if spec_changed {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                meta_mut(&mut obj).insert("generation".into(), json!(g));
            }
        }
        // The old object's resourceVersion stays until we know this is a real write.
        meta_mut(&mut obj).insert(
            "resourceVersion".into(),
            old["metadata"]["resourceVersion"].clone(),
        );
        let now = now_rfc3339();
        if !ctx.apply {
            patch::track_update(
                Some(old),
                &mut obj,
                &ctx.manager,
                &def.api_version(),
                subresource,
                &now,
            );
        }
        if comparable(&obj) == comparable(old) {
            // kube-apiserver skips the storage write for a no-op: same resourceVersion, no event.
            return Ok(old.clone());
        }
        if ctx.dry_run {
            return Ok(Arc::new(obj));
        }
        let rv = self.store.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let deleting = !obj["metadata"]["deletionTimestamp"].is_null();
        let no_finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty());
        if deleting && no_finalizers && !(def.plural == "pods" && pod_awaits_kubelet(&obj)) {
            let last = self.remove_object(def, ns, name, obj, rv);
            return Ok(last);
        }
        Ok(self.store.put(def.storage, ns, name, obj, rv))
    }

    fn remove_object(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        name: &str,
        last: Value,
        rv: u64,
    ) -> Arc<Value> {
        admission::after_delete(self, def, ns, &last);
        let fallback = Arc::new(last.clone());
        self.store
            .remove(def.storage, ns, name, last, rv)
            .unwrap_or(fallback)
    }

    /// Delete with options. Finalizers and graceful pod deletion keep the object.
    pub fn delete(
        &mut self,
        def: &'static ResourceDef,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
        ctx: &WriteCtx,
    ) -> Result<Deleted, ApiError> {
        let old = self.get(def, ns, name)?;
        if let Some(uid) = &opts.precondition_uid
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                    def.kind,
                    meta_str(&old, "uid")
                ),
                Some(ApiError::details(def.group, def.kind, name)),
            ));
        }
        if let Some(rv) = &opts.precondition_rv
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                    def.kind,
                    meta_str(&old, "resourceVersion")
                ),
                Some(ApiError::details(def.group, def.kind, name)),
            ));
        }
        let mut obj = (*old).clone();
        let already_deleting = !old["metadata"]["deletionTimestamp"].is_null();

        // Graceful deletion: only pods bound to a node wait for their kubelet.
        let mut grace: Option<i64> = None;
        if def.plural == "pods" {
            let bound = obj["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let terminal = matches!(
                obj["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            let requested = opts.grace_period_seconds.unwrap_or_else(|| {
                obj["spec"]["terminationGracePeriodSeconds"]
                    .as_i64()
                    .unwrap_or(30)
            });
            if bound && !terminal && requested > 0 {
                let current = old["metadata"]["deletionGracePeriodSeconds"].as_i64();
                // A second delete may only shorten the grace period.
                if current.is_none_or(|c| requested < c) {
                    grace = Some(requested);
                } else {
                    grace = current;
                }
            }
        }

        // Propagation: Foreground / Orphan add the GC's finalizers.
        let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // Every kind we serve defaults to Background propagation.
        let policy = opts.propagation.as_deref().unwrap_or("Background");
        let add_fin = match policy {
            "Foreground" => Some("foregroundDeletion"),
            "Orphan" => Some("orphan"),
            _ => None,
        };
        // kube-apiserver adds the finalizer whether or not dependents exist.
        if !already_deleting
            && let Some(f) = add_fin
            && !finalizers.iter().any(|x| x == f)
        {
            finalizers.push(json!(f));
        }
        // Namespaces always go through the namespace controller.
        let namespace_lifecycle = def.plural == "namespaces";

        if finalizers.is_empty() && grace.is_none() && !namespace_lifecycle {
            if def.plural == "pods" {
                // A pod deleted at once still answers with its deletion stamped (grace 0).
                let m = meta_mut(&mut obj);
                if !already_deleting {
                    m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                }
                m.insert("deletionGracePeriodSeconds".into(), json!(0));
            }
            if ctx.dry_run {
                return Ok(Deleted::Gone(Arc::new(obj)));
            }
            let rv = self.store.next_rv();
            meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
            let last = self.remove_object(def, ns, name, obj, rv);
            return Ok(Deleted::Gone(last));
        }

        // Mark for deletion.
        {
            let m = meta_mut(&mut obj);
            if !finalizers.is_empty() {
                m.insert("finalizers".into(), Value::Array(finalizers));
            }
            match grace {
                Some(g) => {
                    let unchanged = already_deleting
                        && m.get("deletionGracePeriodSeconds").and_then(Value::as_i64) == Some(g);
                    if !unchanged {
                        m.insert("deletionTimestamp".into(), json!(rfc3339_in(g)));
                        m.insert("deletionGracePeriodSeconds".into(), json!(g));
                    }
                }
                None => {
                    if !already_deleting {
                        m.insert("deletionTimestamp".into(), json!(now_rfc3339()));
                        if !namespace_lifecycle {
                            m.insert("deletionGracePeriodSeconds".into(), json!(0));
                        }
                    }
                }
            }
        }
        if namespace_lifecycle {
            obj["status"]["phase"] = json!("Terminating");
        }
        if comparable(&obj) == comparable(&old) {
            return Ok(Deleted::Pending(old));
        }
        if ctx.dry_run {
            return Ok(Deleted::Pending(Arc::new(obj)));
        }
        let rv = self.store.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        Ok(Deleted::Pending(self.store.put(
            def.storage,
            ns,
            name,
            obj,
            rv,
        )))
    }

    /// Remove an object that is marked for deletion and has no finalizers left (controllers).
    pub fn finalize_if_done(&mut self, def: &'static ResourceDef, ns: &str, name: &str) {
        let Some(old) = self.store.get(def.storage, ns, name) else {
            return;
        };
        if old["metadata"]["deletionTimestamp"].is_null() {
            return;
        }
        if old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| !f.is_empty())
        {
            return;
        }
        let rv = self.store.next_rv();
        let mut last = (*old).clone();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        self.remove_object(def, ns, name, last, rv);
    }
}

/// A bound, non-terminal pod under graceful deletion waits for its kubelet's `grace=0` delete.
fn pod_awaits_kubelet(pod: &Value) -> bool {
    let bound = pod["spec"]["nodeName"]
        .as_str()
        .is_some_and(|n| !n.is_empty());
    let grace = pod["metadata"]["deletionGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(0);
    bound && grace > 0
}

/// Whether DELETE of this kind answers the object.
pub fn returns_object(def: &ResourceDef) -> bool {
    delete_returns_object(def)
}

/// Initial objects every cluster has.
pub fn bootstrap(shared: &Shared) {
    let mut st = shared.lock();
    let ns_def = resources::find("", "v1", "namespaces").expect("namespaces are served");
    let ctx = WriteCtx::system("kube-apiserver");
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let _ = st.create(
            ns_def,
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            &ctx,
        );
    }
    // kube-apiserver's bootstrap controller keeps `default/kubernetes`: the first address of
    // the service range, 443 -> the secure port. (Its Endpoints, the advertised address, are
    // left out: this server listens on loopback, which no Endpoints may name.)
    let svc_def = resources::find("", "v1", "services").expect("services are served");
    let ip = st.alloc.first_ip();
    let _ = st.create(
        svc_def,
        "default",
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip], "sessionAffinity": "None",
                "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}}),
        &ctx,
    );
    let rv = st.store.rv();
    drop(st);
    shared.notify(rv);
}
