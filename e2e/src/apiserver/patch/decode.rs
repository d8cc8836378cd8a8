//! Request-body decoding for patches, with the `400` texts kube-apiserver answers.

use serde_json::Value;

use super::super::errors::ApiError;

/// Render a serde_json parse error the way Go's `encoding/json` words it.
pub fn go_json_error(err: &serde_json::Error, input: &[u8]) -> String {
    if err.is_eof() {
        return "unexpected end of JSON input".into();
    }
    // serde_json reports a 1-based line/column of the offending character.
    let text = String::from_utf8_lossy(input);
    let offset: usize = text
        .split_inclusive('\n')
        .take(err.line().saturating_sub(1))
        .map(str::len)
        .sum::<usize>()
        + err.column().saturating_sub(1);
    let c = text[offset.min(text.len())..].chars().next().unwrap_or(' ');
    if err.to_string().starts_with("trailing characters") {
        return format!("invalid character {c:?} after top-level value");
    }
    format!("invalid character {c:?} looking for beginning of value")
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Parse a merge or strategic-merge patch body (`errors/malformed-json-patch`).
pub fn decode_patch_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("error decoding patch: {}", go_json_error(&e, body)))
    })
}

/// Parse a JSON-patch body into its operation array (`configmaps/patch-json-not-array`).
pub fn decode_json_patch(body: &[u8]) -> Result<Value, ApiError> {
    let v = decode_patch_body(body)?;
    let bad = |what: String| {
        ApiError::bad_request(format!(
            "error decoding patch: json: cannot unmarshal {what}"
        ))
    };
    match &v {
        Value::Array(ops) => {
            for op in ops {
                let Value::Object(m) = op else {
                    if op.is_null() {
                        continue;
                    }
                    return Err(bad(format!(
                        "{} into Go value of type handlers.jsonPatchOp",
                        json_type(op)
                    )));
                };
                for f in ["op", "path", "from"] {
                    if let Some(x) = m.get(f).filter(|x| !x.is_string() && !x.is_null()) {
                        return Err(bad(format!(
                            "{} into Go struct field jsonPatchOp.{f} of type string",
                            json_type(x)
                        )));
                    }
                }
            }
            Ok(v)
        }
        Value::Null => Ok(Value::Array(Vec::new())),
        other => Err(bad(format!(
            "{} into Go value of type []handlers.jsonPatchOp",
            json_type(other)
        ))),
    }
}

/// Parse an `application/apply-patch+yaml` body: YAML (of which JSON is a subset) into a value.
pub fn decode_apply_body(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    #[rstest]
    #[case(b"{\"data\":".as_slice(), "error decoding patch: unexpected end of JSON input")]
    #[case(b"{\"data\" x".as_slice(), "error decoding patch: invalid character 'x' looking for beginning of value")]
    fn malformed_patch(#[case] body: &[u8], #[case] msg: &str) {
        let e = decode_patch_body(body).unwrap_err();
        assert_eq!((e.code, e.body["message"].as_str().unwrap()), (400, msg));
    }

    #[rstest]
    #[case(br#"{"op":"add"}"#.as_slice(), "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp")]
    #[case(br#"["x"]"#.as_slice(), "error decoding patch: json: cannot unmarshal string into Go value of type handlers.jsonPatchOp")]
    #[case(br#"[{"op":1}]"#.as_slice(), "error decoding patch: json: cannot unmarshal number into Go struct field jsonPatchOp.op of type string")]
    fn json_patch_shape(#[case] body: &[u8], #[case] msg: &str) {
        let e = decode_json_patch(body).unwrap_err();
        assert_eq!((e.code, e.body["message"].as_str().unwrap()), (400, msg));
        assert!(e.body.get("details").is_none());
    }

    #[test]
    fn yaml_apply_body() {
        // configmaps/apply-yaml-body
        let v = decode_apply_body(
            b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-ssa-yaml\ndata:\n  a: \"1\"\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm-ssa-yaml"},"data":{"a":"1"}})
        );
        let v = decode_apply_body(b"{\"kind\":\"ConfigMap\",\"data\":{\"n\":3}}").unwrap();
        assert_eq!(v, json!({"kind":"ConfigMap","data":{"n":3}}));
    }
}
