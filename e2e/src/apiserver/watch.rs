//! Watch streams, replayed from the store's change history.
//!
//! Semantics follow kube-apiserver's watch cache: `resourceVersion` unset or `0` starts with
//! synthetic ADDED events for the current state; `resourceVersion=N` streams every change after
//! N, or a single ERROR event with a 410 `Status` when N has left the history window;
//! `sendInitialEvents=true` ends the initial state with an annotated BOOKMARK; selector watches
//! turn "left the selector" into DELETED (previous state) and "entered" into ADDED; bookmarks
//! arrive shortly before `timeoutSeconds` when the store has moved on.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::convert;
use super::errors::ApiError;
use super::http::{Body, Representation, Req, error_response, options_invalid};
use super::resources::ResourceDef;
use super::selectors::{FieldSelector, LabelSelector};
use super::store::{Change, EventType};
use super::table;

/// How a watch starts.
enum Start {
    /// Synthetic ADDED events for the current state, then changes.
    CurrentState { bookmark_end: bool },
    /// Changes after this resourceVersion.
    After(u64),
}

struct Filter {
    def: &'static ResourceDef,
    namespace: Option<String>,
    label: LabelSelector,
    field: FieldSelector,
}

impl Filter {
    fn matches(&self, obj: &Value) -> bool {
        self.label.matches(obj["metadata"]["labels"].as_object()) && self.field.matches(obj)
    }

    fn in_scope(&self, c: &Change) -> bool {
        c.storage == self.def.storage
            && self.namespace.as_deref().is_none_or(|ns| ns == c.namespace)
    }

    /// The event a change produces for this watcher, if any.
    fn event_for(&self, c: &Arc<Change>) -> Option<(&'static str, EventObject)> {
        if !self.in_scope(c) {
            return None;
        }
        let cur = self.matches(&c.object);
        let prev = c.previous.as_deref().is_some_and(|p| self.matches(p));
        let this = || EventObject::Change(c.clone());
        match c.etype {
            EventType::Added if cur => Some(("ADDED", this())),
            EventType::Modified if cur && prev => Some(("MODIFIED", this())),
            EventType::Modified if cur => Some(("ADDED", this())),
            EventType::Modified if prev => {
                // Left the selector: the previous state, stamped with this change's version.
                let mut old = c.previous.as_deref().cloned().unwrap_or(Value::Null);
                old["metadata"]["resourceVersion"] = json!(c.rv.to_string());
                Some(("DELETED", EventObject::Owned(old)))
            }
            EventType::Deleted if cur || prev => Some(("DELETED", this())),
            _ => None,
        }
    }
}

/// The object of one event: the change's own object (shared, its encoding cached across
/// watchers) or one made for this watcher alone.
enum EventObject {
    Change(Arc<Change>),
    Owned(Value),
}

impl EventObject {
    fn value(&self) -> &Value {
        match self {
            EventObject::Change(c) => &c.object,
            EventObject::Owned(v) => v,
        }
    }
}

/// Serve `GET ...?watch=1`.
pub async fn serve(r: Req) -> Response<Body> {
    match prepare(&r) {
        Ok((filter, start, timeout, bookmarks)) => stream(r, filter, start, timeout, bookmarks),
        Err(e) => error_response(&e),
    }
}

fn prepare(r: &Req) -> Result<(Filter, Start, Duration, bool), ApiError> {
    let def = r.target.def;
    let label = LabelSelector::parse(r.query.get("labelSelector").unwrap_or(""))?;
    let field = FieldSelector::parse(
        r.query.get("fieldSelector").unwrap_or(""),
        def.group,
        def.plural,
    )?;
    let rv = r.query.get("resourceVersion").unwrap_or("");
    let rv_match = r.query.get("resourceVersionMatch").unwrap_or("");
    let send_initial = r
        .query
        .get("sendInitialEvents")
        .map(|v| v == "true" || v == "1");
    let bookmarks = r.query.flag("allowWatchBookmarks");
    if !rv_match.is_empty() && send_initial.is_none() && rv.is_empty() {
        return Err(options_invalid(
            "ListOptions",
            "resourceVersionMatch",
            "FieldValueForbidden",
            "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
        ));
    }
    let start = match (send_initial, rv) {
        (Some(true), _) => Start::CurrentState { bookmark_end: bookmarks },
        (_, "" | "0") => Start::CurrentState { bookmark_end: false },
        (_, n) => Start::After(n.parse().map_err(|_| {
            ApiError::new(500, "", format!("resourceVersion: Invalid value: \"{n}\": strconv.ParseUint: parsing \"{n}\": invalid syntax"), None)
        })?),
    };
    let timeout = match r
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
    {
        Some(t) if t > 0 => Duration::from_secs(t),
        // kube-apiserver picks a random timeout between min-request-timeout and twice it.
        _ => Duration::from_secs(1800 + rand::random::<u64>() % 1800),
    };
    let filter = Filter {
        def,
        namespace: r.target.namespace.clone(),
        label,
        field,
    };
    Ok((filter, start, timeout, bookmarks))
}

fn stream(
    r: Req,
    filter: Filter,
    start: Start,
    timeout: Duration,
    bookmarks: bool,
) -> Response<Body> {
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let shared = r.shared.clone();
    let repr = r.repr;
    tokio::spawn(async move {
        let mut rv_rx = shared.rv_tx.subscribe();
        let mut epoch_rx = shared.watch_epoch.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut enc = Encoder {
            def: filter.def,
            repr,
            first: true,
        };

        // Initial state or resume point.
        let (mut pos, initial) = {
            let st = shared.lock();
            match start {
                Start::CurrentState { bookmark_end } => {
                    let items: Vec<Arc<Value>> = st
                        .store
                        .list(filter.def.storage, filter.namespace.as_deref())
                        .filter(|o| filter.matches(o))
                        .cloned()
                        .collect();
                    (st.store.rv(), Initial::State(items, bookmark_end))
                }
                Start::After(n) if !st.store.can_resume(n) => {
                    (n, Initial::TooOld(n, st.store.rv()))
                }
                Start::After(n) => (n, Initial::None),
            }
        };
        match initial {
            Initial::State(items, bookmark_end) => {
                for o in items {
                    if tx.send(enc.event("ADDED", &o)).await.is_err() {
                        return;
                    }
                }
                if bookmark_end && tx.send(enc.bookmark(pos, true)).await.is_err() {
                    return;
                }
            }
            Initial::TooOld(n, current) => {
                let _ = tx.send(too_old(n, current)).await;
                return;
            }
            Initial::None => {}
        }

        let mut last_sent = pos;
        // A bookmark shortly before the timeout, as kube-apiserver does when it has moved on.
        let bookmark_at = deadline
            .checked_sub(Duration::from_secs(2))
            .filter(|_| timeout > Duration::from_secs(2));
        let mut bookmark_sent = false;
        let mut next_periodic = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            // Drain everything already in history.
            let batch: Result<Vec<(&'static str, EventObject)>, u64> = {
                let st = shared.lock();
                if !st.store.can_resume(pos) {
                    Err(st.store.rv())
                } else {
                    let mut out = Vec::new();
                    for c in st.store.changes_after(pos) {
                        if let Some(ev) = filter.event_for(c) {
                            out.push(ev);
                        }
                    }
                    // Every resourceVersion is one recorded change, so we are now current.
                    pos = st.store.rv();
                    Ok(out)
                }
            };
            match batch {
                Err(current) => {
                    let _ = tx.send(too_old(pos, current)).await;
                    return;
                }
                Ok(events) => {
                    for (t, o) in events {
                        if let Some(rv) = o.value()["metadata"]["resourceVersion"]
                            .as_str()
                            .and_then(|s| s.parse().ok())
                        {
                            last_sent = rv;
                        }
                        let line = match &o {
                            EventObject::Change(c) => enc.change_event(t, c),
                            EventObject::Owned(v) => enc.event(t, v),
                        };
                        if tx.send(line).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let wake_bookmark = match bookmark_at {
                Some(b) if bookmarks && !bookmark_sent => b,
                _ => deadline,
            };
            tokio::select! {
                changed = rv_rx.changed() => if changed.is_err() { return },
                _ = epoch_rx.changed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tokio::time::sleep_until(wake_bookmark), if bookmarks && !bookmark_sent => {
                    bookmark_sent = true;
                    let current = shared.lock().store.rv();
                    if current > last_sent && tx.send(enc.bookmark(current, false)).await.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep_until(next_periodic), if bookmarks => {
                    next_periodic = tokio::time::Instant::now() + Duration::from_secs(60);
                    let current = shared.lock().store.rv();
                    if tx.send(enc.bookmark(current, false)).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(Frame::data(b)), rx))
    });
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .header("Transfer-Encoding", "chunked")
        .body(StreamBody::new(stream).boxed())
        .expect("valid response")
}

enum Initial {
    State(Vec<Arc<Value>>, bool),
    TooOld(u64, u64),
    None,
}

/// Encodes events in the requested representation.
struct Encoder {
    def: &'static ResourceDef,
    repr: Representation,
    first: bool,
}

impl Encoder {
    /// The event for a change's own object. Plain JSON (and YAML, which watches answer in
    /// JSON) is the same for every watcher of the resource: encoded once per change, then
    /// shared. Tables and metadata-only views depend on the watcher and are made each time.
    fn change_event(&mut self, etype: &'static str, c: &Change) -> Bytes {
        match self.repr {
            Representation::Table | Representation::PartialMetadata => self.event(etype, &c.object),
            _ => {
                let def = self.def;
                let def_id = def as *const ResourceDef as usize;
                self.first = false;
                c.encoded_or(def_id, etype, || {
                    event_line(etype, &convert::from_storage(def, &c.object))
                })
            }
        }
    }

    fn event(&mut self, etype: &str, obj: &Value) -> Bytes {
        let wire = convert::from_storage(self.def, obj);
        let object = match self.repr {
            Representation::PartialMetadata => table::partial_metadata(&wire),
            Representation::Table => {
                let mut t = table::table_for(self.def, &[wire], None);
                if !self.first
                    && let Some(m) = t.as_object_mut()
                {
                    m.remove("columnDefinitions");
                }
                t
            }
            _ => wire,
        };
        self.first = false;
        event_line(etype, &object)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        use base64::Engine;
        let (kind, api_version) = match self.repr {
            Representation::PartialMetadata => (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            ),
            _ => (self.def.kind.to_string(), self.def.api_version()),
        };
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if initial_end {
            let blueprint = format!(
                "{{\"kind\":\"{}\",\"apiVersion\":\"{}\",\"metadata\":{{}},\"items\":null}}\n",
                self.def.list_kind(),
                self.def.api_version()
            );
            meta["annotations"] = json!({
                "k8s.io/initial-events-end": "true",
                "kubernetes.io/initial-events-list-blueprint": base64::engine::general_purpose::STANDARD.encode(blueprint),
            });
        }
        line(
            &json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}),
        )
    }
}

fn too_old(rv: u64, current: u64) -> Bytes {
    line(&json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: {rv} ({current})"), "reason": "Expired", "code": 410
    }}))
}

/// The bytes `line(&json!({"type": etype, "object": object}))` gives, without copying the
/// object into a new map first (`json!` serializes its arguments into fresh values).
fn event_line(etype: &str, object: &Value) -> Bytes {
    let mut b = format!("{{\"type\":\"{etype}\",\"object\":").into_bytes();
    if serde_json::to_writer(&mut b, object).is_err() {
        return line(&json!({"type": etype, "object": object}));
    }
    b.extend_from_slice(b"}\n");
    Bytes::from(b)
}

fn line(v: &Value) -> Bytes {
    let mut b = serde_json::to_vec(v).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lines_are_the_bytes_of_the_event_object() {
        let obj = json!({"kind": "Pod", "metadata": {"name": "a\"b", "labels": {"x": "y"}}, "n": [1, 2.5, null]});
        for t in ["ADDED", "MODIFIED", "DELETED"] {
            assert_eq!(
                event_line(t, &obj),
                line(&json!({"type": t, "object": obj}))
            );
        }
    }
}
