//! A minimal OpenAPI v3 publication generated from the resource table.
//!
//! kubectl (`create -f`, `apply`, `replace`) downloads `/openapi/v3` and then the document of the
//! object's group-version to decide whether the server validates fields itself: it looks for a
//! PATCH operation tagged `x-kubernetes-group-version-kind` with the object's kind that lists a
//! `fieldValidation` query parameter. When found, kubectl sends `fieldValidation=Strict` and skips
//! client-side schema validation, so the documents carry every path and operation with its
//! parameters but only skeletal schemas (`apiVersion`, `kind`, `metadata`, open to any other
//! property). `/openapi/v2` stays a 404: client-go reads it only as gnostic protobuf and treats
//! its absence as "no client-side schema".

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::resources::{RESOURCES, ResourceDef};

/// `api/v1` or `apis/<group>/<version>` for every served group version, in table order.
pub fn group_version_paths() -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in RESOURCES {
        let p = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// The `/openapi/v3` root: each group version's document URL, with a content hash as the real
/// server publishes it (clients cache by it).
pub fn root() -> Value {
    let mut paths = Map::new();
    for p in group_version_paths() {
        let doc = group_version_document(&p).unwrap_or(Value::Null);
        let hash = hex_upper(&Sha256::digest(doc.to_string().as_bytes()));
        paths.insert(
            p.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={hash}")}),
        );
    }
    json!({"paths": paths})
}

fn hex_upper(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Go package path of a group's types, as OpenAPI definition names use it.
fn definition_prefix(group: &str, version: &str) -> String {
    // APIService's schema lives in kube-aggregator's tree, not k8s.io/api's.
    if group == "apiregistration.k8s.io" {
        return format!("io.k8s.kube-aggregator.pkg.apis.apiregistration.{version}");
    }
    let pkg = match group {
        "" => "core",
        g => g.split('.').next().unwrap_or(g),
    };
    format!("io.k8s.api.{pkg}.{version}")
}

/// `CoreV1`, `NetworkingV1`, ... (operation id prefix).
fn op_prefix(group: &str, version: &str) -> String {
    let g = match group {
        "" => "core".to_string(),
        g => g.split('.').next().unwrap_or(g).to_string(),
    };
    let cap = |s: &str| {
        let mut c = s.chars();
        c.next()
            .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
            .unwrap_or_default()
    };
    format!("{}{}", cap(&g), cap(version))
}

fn query_param(name: &str, ty: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": ty, "uniqueItems": true}})
}

fn write_params(with_force: bool) -> Vec<Value> {
    let mut v = vec![
        query_param(
            "dryRun",
            "string",
            "When present, indicates that modifications should not be persisted.",
        ),
        query_param(
            "fieldManager",
            "string",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_param(
            "fieldValidation",
            "string",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: - Ignore - Warn - Strict",
        ),
    ];
    if with_force {
        v.push(query_param(
            "force",
            "boolean",
            "Force is going to \"force\" Apply requests.",
        ));
    }
    v
}

fn ref_to(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn ok(schema: &Value, codes: &[&str]) -> Value {
    let mut m = Map::new();
    for c in codes {
        m.insert(
            (*c).to_string(),
            json!({"description": "OK", "content": {"application/json": {"schema": schema}, "application/yaml": {"schema": schema}}}),
        );
    }
    m.insert("401".into(), json!({"description": "Unauthorized"}));
    Value::Object(m)
}

fn operation(
    r: &ResourceDef,
    action: &str,
    op_id: String,
    params: Vec<Value>,
    body: Option<&Value>,
    resp: Value,
) -> Value {
    let mut op = json!({
        "tags": [format!("{}_{}", if r.group.is_empty() { "core" } else { r.group.split('.').next().unwrap_or("") }, r.version)],
        "operationId": op_id,
        "parameters": params,
        "responses": resp,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version, "kind": r.kind},
    });
    if let Some(schema) = body {
        let ct: &[&str] = if action == "patch" {
            &[
                "application/apply-patch+yaml",
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/strategic-merge-patch+json",
            ]
        } else {
            &["*/*"]
        };
        let content: Map<String, Value> = ct
            .iter()
            .map(|c| ((*c).to_string(), json!({"schema": schema})))
            .collect();
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "description": format!("{name} of the resource"), "schema": {"type": "string", "uniqueItems": true}})
}

/// The OpenAPI v3 document of one group version (`api/v1`, `apis/<group>/<version>`), or `None`
/// when the group version is not served.
pub fn group_version_document(gv_path: &str) -> Option<Value> {
    let segs: Vec<&str> = gv_path.trim_matches('/').split('/').collect();
    let (group, version) = match segs.as_slice() {
        ["api", v] => ("", *v),
        ["apis", g, v] => (*g, *v),
        _ => return None,
    };
    let defs: Vec<&ResourceDef> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    if defs.is_empty() {
        return None;
    }
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let meta = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
    let prefix = definition_prefix(group, version);
    let opp = op_prefix(group, version);
    for r in defs {
        let def_name = format!("{prefix}.{}", r.kind);
        let list_name = format!("{prefix}.{}List", r.kind);
        let gvk = json!([{"group": r.group, "version": r.version, "kind": r.kind}]);
        schemas.insert(
            def_name.clone(),
            json!({
                "description": format!("{} (served by the vcsync test API server).", r.kind),
                "type": "object",
                "properties": {
                    "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object."},
                    "kind": {"type": "string", "description": "Kind is a string value representing the REST resource this object represents."},
                    "metadata": {"allOf": [ref_to(meta)], "default": {}},
                },
                "x-kubernetes-group-version-kind": gvk,
            }),
        );
        schemas.insert(
            list_name.clone(),
            json!({
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "items": {"type": "array", "items": {"allOf": [ref_to(&def_name)], "default": {}}},
                    "metadata": {"allOf": [ref_to("io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta")], "default": {}},
                },
                "x-kubernetes-group-version-kind": [{"group": r.group, "version": r.version, "kind": format!("{}List", r.kind)}],
            }),
        );
        let base = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let (collection, scope_params, ns_word) = if r.namespaced {
            (
                format!("{base}/namespaces/{{namespace}}/{}", r.plural),
                vec![path_param("namespace")],
                "Namespaced",
            )
        } else {
            (format!("{base}/{}", r.plural), Vec::new(), "")
        };
        let obj = ref_to(&def_name);
        let list = ref_to(&list_name);
        let mut coll = Map::new();
        coll.insert(
            "get".into(),
            operation(
                r,
                "list",
                format!("list{opp}{ns_word}{}", r.kind),
                Vec::new(),
                None,
                ok(&list, &["200"]),
            ),
        );
        coll.insert(
            "post".into(),
            operation(
                r,
                "post",
                format!("create{opp}{ns_word}{}", r.kind),
                write_params(false),
                Some(&obj),
                ok(&obj, &["200", "201", "202"]),
            ),
        );
        if r.verbs.contains(&"deletecollection") {
            coll.insert(
                "delete".into(),
                operation(
                    r,
                    "deletecollection",
                    format!("deletecollection{opp}{ns_word}{}", r.kind),
                    Vec::new(),
                    None,
                    ok(&json!({}), &["200"]),
                ),
            );
        }
        coll.insert("parameters".into(), Value::Array(scope_params.clone()));
        paths.insert(collection.clone(), Value::Object(coll));

        let mut item_params = vec![path_param("name")];
        item_params.extend(scope_params.clone());
        let mut item = Map::new();
        item.insert(
            "get".into(),
            operation(
                r,
                "get",
                format!("read{opp}{ns_word}{}", r.kind),
                Vec::new(),
                None,
                ok(&obj, &["200"]),
            ),
        );
        item.insert(
            "put".into(),
            operation(
                r,
                "put",
                format!("replace{opp}{ns_word}{}", r.kind),
                write_params(false),
                Some(&obj),
                ok(&obj, &["200", "201"]),
            ),
        );
        item.insert(
            "patch".into(),
            operation(
                r,
                "patch",
                format!("patch{opp}{ns_word}{}", r.kind),
                write_params(true),
                Some(&json!({"type": "object"})),
                ok(&obj, &["200", "201"]),
            ),
        );
        item.insert(
            "delete".into(),
            operation(
                r,
                "delete",
                format!("delete{opp}{ns_word}{}", r.kind),
                Vec::new(),
                None,
                ok(&obj, &["200", "202"]),
            ),
        );
        item.insert("parameters".into(), Value::Array(item_params.clone()));
        paths.insert(format!("{collection}/{{name}}"), Value::Object(item));

        if r.has_status() {
            let mut st = Map::new();
            st.insert(
                "get".into(),
                operation(
                    r,
                    "get",
                    format!("read{opp}{ns_word}{}Status", r.kind),
                    Vec::new(),
                    None,
                    ok(&obj, &["200"]),
                ),
            );
            st.insert(
                "put".into(),
                operation(
                    r,
                    "put",
                    format!("replace{opp}{ns_word}{}Status", r.kind),
                    write_params(false),
                    Some(&obj),
                    ok(&obj, &["200", "201"]),
                ),
            );
            st.insert(
                "patch".into(),
                operation(
                    r,
                    "patch",
                    format!("patch{opp}{ns_word}{}Status", r.kind),
                    write_params(true),
                    Some(&json!({"type": "object"})),
                    ok(&obj, &["200", "201"]),
                ),
            );
            st.insert("parameters".into(), Value::Array(item_params));
            paths.insert(format!("{collection}/{{name}}/status"), Value::Object(st));
        }
    }
    schemas.insert(
        meta.into(),
        json!({
            "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "generateName": {"type": "string"},
                "namespace": {"type": "string"},
                "uid": {"type": "string"},
                "resourceVersion": {"type": "string"},
                "generation": {"type": "integer", "format": "int64"},
                "creationTimestamp": {"type": "string", "format": "date-time"},
                "deletionTimestamp": {"type": "string", "format": "date-time"},
                "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
                "labels": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
                "annotations": {"type": "object", "additionalProperties": {"type": "string", "default": ""}},
                "finalizers": {"type": "array", "items": {"type": "string", "default": ""}, "x-kubernetes-list-type": "set", "x-kubernetes-patch-strategy": "merge"},
                "ownerReferences": {"type": "array", "items": {"type": "object"}, "x-kubernetes-patch-merge-key": "uid", "x-kubernetes-patch-strategy": "merge"},
                "managedFields": {"type": "array", "items": {"type": "object"}},
            },
        }),
    );
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta".into(),
        json!({"type": "object", "properties": {"continue": {"type": "string"}, "remainingItemCount": {"type": "integer", "format": "int64"}, "resourceVersion": {"type": "string"}}}),
    );
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.3"},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_lists_every_served_group_version_with_a_hash() {
        let r = root();
        let paths = r["paths"].as_object().unwrap();
        assert!(paths.contains_key("api/v1"));
        assert!(paths.contains_key("apis/networking.k8s.io/v1"));
        let url = paths["api/v1"]["serverRelativeURL"].as_str().unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="), "{url}");
    }

    /// What kubectl's `queryParamVerifierV3` checks before sending `fieldValidation=Strict`.
    fn supports_field_validation(doc: &Value, group: &str, kind: &str) -> bool {
        doc["paths"].as_object().unwrap().values().any(|p| {
            let op = &p["patch"];
            op["x-kubernetes-group-version-kind"]
                == json!({"group": group, "version": "v1", "kind": kind})
                && op["parameters"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|q| q["name"] == "fieldValidation")
        })
    }

    #[test]
    fn every_kind_advertises_field_validation_on_patch() {
        for r in RESOURCES {
            let p = if r.group.is_empty() {
                "api/v1".to_string()
            } else {
                format!("apis/{}/v1", r.group)
            };
            let doc = group_version_document(&p).unwrap();
            assert!(
                supports_field_validation(&doc, r.group, r.kind),
                "{}",
                r.kind
            );
            let schema = &doc["components"]["schemas"]
                [format!("{}.{}", definition_prefix(r.group, r.version), r.kind)];
            assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], r.kind);
        }
    }

    #[test]
    fn unknown_group_versions_have_no_document() {
        assert!(group_version_document("apis/apps/v1").is_none());
        assert!(group_version_document("api/v2").is_none());
        assert!(group_version_document("nope").is_none());
    }

    #[test]
    fn paths_are_namespaced_or_cluster_scoped() {
        let doc = group_version_document("api/v1").unwrap();
        assert!(
            doc["paths"]
                .get("/api/v1/namespaces/{namespace}/configmaps/{name}")
                .is_some()
        );
        assert!(doc["paths"].get("/api/v1/nodes/{name}/status").is_some());
        assert!(doc["paths"].get("/api/v1/namespaces/{name}").is_some());
    }
}
