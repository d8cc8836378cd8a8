//! JSON patch (RFC 6902) with kube-apiserver's error answers.
//!
//! Every failure while applying the operations (failed `test`, missing path, bad op) is a `422`
//! with the generic "rejected our request" message and empty details, because the real server
//! wraps the library error in `NewGenericServerResponse` and drops its text.

use serde_json::{Value, json};

use super::super::errors::ApiError;

fn rejected() -> ApiError {
    ApiError::new(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        Some(json!({})),
    )
}

/// Split a JSON pointer into unescaped tokens (`~1` is `/`, `~0` is `~`).
fn tokens(pointer: &str) -> Result<Vec<String>, ApiError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(rejected());
    };
    Ok(rest
        .split('/')
        .map(|t| t.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn index(tok: &str, len: usize, allow_end: bool) -> Result<usize, ApiError> {
    if allow_end && tok == "-" {
        return Ok(len);
    }
    if tok.is_empty()
        || (tok.len() > 1 && tok.starts_with('0'))
        || !tok.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(rejected());
    }
    let i: usize = tok.parse().map_err(|_| rejected())?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if (allow_end && i > max) || (!allow_end && i >= len) {
        return Err(rejected());
    }
    Ok(i)
}

/// The container holding the last token, and that token.
fn parent<'a>(doc: &'a mut Value, toks: &[String]) -> Result<&'a mut Value, ApiError> {
    let mut cur = doc;
    for t in &toks[..toks.len() - 1] {
        cur = match cur {
            Value::Object(m) => m.get_mut(t).ok_or_else(rejected)?,
            Value::Array(a) => {
                let i = index(t, a.len(), false)?;
                &mut a[i]
            }
            _ => return Err(rejected()),
        };
    }
    Ok(cur)
}

fn get<'a>(doc: &'a Value, toks: &[String]) -> Result<&'a Value, ApiError> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get(t).ok_or_else(rejected)?,
            Value::Array(a) => &a[index(t, a.len(), false)?],
            _ => return Err(rejected()),
        };
    }
    Ok(cur)
}

fn add(doc: &mut Value, toks: &[String], v: Value) -> Result<(), ApiError> {
    if toks.is_empty() {
        *doc = v;
        return Ok(());
    }
    let last = &toks[toks.len() - 1];
    match parent(doc, toks)? {
        Value::Object(m) => {
            m.insert(last.clone(), v);
        }
        Value::Array(a) => {
            let i = index(last, a.len(), true)?;
            a.insert(i, v);
        }
        _ => return Err(rejected()),
    }
    Ok(())
}

fn remove(doc: &mut Value, toks: &[String]) -> Result<Value, ApiError> {
    if toks.is_empty() {
        return Err(rejected());
    }
    let last = &toks[toks.len() - 1];
    match parent(doc, toks)? {
        Value::Object(m) => m.shift_remove(last).ok_or_else(rejected),
        Value::Array(a) => {
            let i = index(last, a.len(), false)?;
            Ok(a.remove(i))
        }
        _ => Err(rejected()),
    }
}

fn str_field<'a>(op: &'a Value, name: &str) -> Result<&'a str, ApiError> {
    op.get(name).and_then(Value::as_str).ok_or_else(rejected)
}

/// Apply an RFC 6902 patch (`patch` must be the decoded array, see [`super::decode_json_patch`]).
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, ApiError> {
    let Value::Array(ops) = patch else {
        return Err(ApiError::bad_request(
            "error decoding patch: json: cannot unmarshal object into Go value of type []handlers.jsonPatchOp",
        ));
    };
    let mut doc = target.clone();
    for op in ops {
        let path = tokens(str_field(op, "path")?)?;
        match str_field(op, "op")? {
            "add" => add(
                &mut doc,
                &path,
                op.get("value").cloned().ok_or_else(rejected)?,
            )?,
            "remove" => {
                remove(&mut doc, &path)?;
            }
            "replace" => {
                let v = op.get("value").cloned().ok_or_else(rejected)?;
                if path.is_empty() {
                    doc = v;
                } else {
                    // replace requires the target to exist: remove then add at the same place.
                    remove(&mut doc, &path)?;
                    add(&mut doc, &path, v)?;
                }
            }
            "move" => {
                let from = tokens(str_field(op, "from")?)?;
                if path.len() > from.len() && path[..from.len()] == from[..] {
                    return Err(rejected());
                }
                let v = remove(&mut doc, &from)?;
                add(&mut doc, &path, v)?;
            }
            "copy" => {
                let from = tokens(str_field(op, "from")?)?;
                let v = get(&doc, &from)?.clone();
                add(&mut doc, &path, v)?;
            }
            "test" => {
                let want = op.get("value").unwrap_or(&Value::Null);
                if get(&doc, &path)? != want {
                    return Err(rejected());
                }
            }
            _ => return Err(rejected()),
        }
    }
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn cm() -> Value {
        json!({"metadata": {"name": "cm1", "labels": {"tier": "x"}}, "data": {"k1": "v1-unconditional", "k2": "v2"}})
    }

    #[rstest]
    // configmaps/patch-json
    #[case(cm(), json!([{"op":"add","path":"/data/k3","value":"v3"},{"op":"replace","path":"/data/k1","value":"v1-json"},{"op":"remove","path":"/data/k2"}]),
           json!({"metadata": {"name": "cm1", "labels": {"tier": "x"}}, "data": {"k1": "v1-json", "k3": "v3"}}))]
    #[case(json!({"a":[1,2]}), json!([{"op":"add","path":"/a/-","value":3}]), json!({"a":[1,2,3]}))]
    #[case(json!({"a":[1,2]}), json!([{"op":"add","path":"/a/0","value":0}]), json!({"a":[0,1,2]}))]
    #[case(json!({"a":[1,2]}), json!([{"op":"remove","path":"/a/0"}]), json!({"a":[2]}))]
    #[case(json!({"a/b":1,"m~n":2}), json!([{"op":"replace","path":"/a~1b","value":3},{"op":"remove","path":"/m~0n"}]), json!({"a/b":3}))]
    #[case(json!({"a":{"b":1}}), json!([{"op":"move","from":"/a/b","path":"/c"}]), json!({"a":{},"c":1}))]
    #[case(json!({"a":{"b":1}}), json!([{"op":"copy","from":"/a","path":"/c"}]), json!({"a":{"b":1},"c":{"b":1}}))]
    #[case(json!({"a":1}), json!([{"op":"test","path":"/a","value":1}]), json!({"a":1}))]
    #[case(json!({"a":1}), json!([{"op":"add","path":"","value":{"b":2}}]), json!({"b":2}))]
    fn applies(#[case] target: Value, #[case] patch: Value, #[case] want: Value) {
        assert_eq!(json_patch(&target, &patch).unwrap(), want);
    }

    #[rstest]
    // configmaps/patch-json-test-fails
    #[case(json!([{"op":"test","path":"/data/k1","value":"wrong"},{"op":"replace","path":"/data/k1","value":"never"}]))]
    // configmaps/patch-json-remove-missing
    #[case(json!([{"op":"remove","path":"/data/nope"}]))]
    #[case(json!([{"op":"replace","path":"/data/nope","value":1}]))]
    #[case(json!([{"op":"add","path":"/nope/x","value":1}]))]
    #[case(json!([{"op":"frobnicate","path":"/data"}]))]
    #[case(json!([{"path":"/data"}]))]
    #[case(json!([{"op":"add","path":"/metadata/labels/tier/x","value":1}]))]
    fn rejects_with_generic_422(#[case] patch: Value) {
        let err = json_patch(&cm(), &patch).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.body,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "the server rejected our request due to an error in our request",
                   "reason": "Invalid", "details": {}, "code": 422})
        );
    }
}
